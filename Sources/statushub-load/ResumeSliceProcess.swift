import ArgumentParser
import Foundation
import StatusHubCore
import Synchronization

/// A slice of the resume run's subscribers in a child process (`statushub-load resume-slice`), driven by JSON lines:
/// a `ResumeSliceRequest` on its standard input, the reply on its standard output; its progress lines go to the
/// standard error it shares with the command. The child ends when its standard input does, so a harness that dies
/// takes its slices with it.
final class ResumeSliceProcess: ResumeSlice {
    struct Ended: Error, CustomStringConvertible {
        var label: String
        var description: String { "\(label): the slice process ended" }
    }

    private let process: Process
    private let requests: FileHandle
    private let replies: PipeLines
    private let label: String
    /// One request at a time: a reply is the next line.
    private let turn = AsyncSemaphore(permits: 1)

    init(index: Int, first: Int, count: Int, sources: String?, line: String, threads: Int?) throws {
        label = "slice \(index)"
        process = Process()
        process.executableURL = URL(fileURLWithPath: try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
        process.arguments = ["resume-slice", "--first", "\(first)", "--subscribers", "\(count)", "--line", line, "--label", label]
            + (sources.map { ["--source-addresses", $0] } ?? []) + (threads.map { ["--threads", "\($0)"] } ?? [])
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        requests = input.fileHandleForWriting
        replies = PipeLines(output.fileHandleForReading)
    }

    var processIDs: [Int32] { [process.processIdentifier] }

    private func send<Reply: Decodable>(_ request: ResumeSliceRequest, _: Reply.Type) async throws -> Reply {
        await turn.acquire()
        defer { turn.release() }
        try requests.write(contentsOf: JSONEncoder().encode(request) + Data("\n".utf8))
        guard let line = await replies.next() else { throw Ended(label: label) }
        return try JSONDecoder().decode(Reply.self, from: line)
    }

    func connect(url: String, concurrency: Int, timeout: Double) async throws -> ResumeSliceReply.Connected {
        try await send(.init(op: .connect, url: url, concurrency: concurrency, timeout: timeout), ResumeSliceReply.Connected.self)
    }

    func wait(seq: Int, timeout: Double) async throws -> ResumeSliceReply.Arrived {
        try await send(.init(op: .wait, timeout: timeout, seq: seq), ResumeSliceReply.Arrived.self)
    }

    func waitClosed(timeout: Double) async throws -> ResumeSliceReply.Closed {
        try await send(.init(op: .waitClosed, timeout: timeout), ResumeSliceReply.Closed.self)
    }

    func resume(url: String, timeout: Double) async throws -> ResumeSliceReply.Resumed {
        try await send(.init(op: .resume, url: url, timeout: timeout), ResumeSliceReply.Resumed.self)
    }

    func report(total: Int) async throws -> ResumeSliceReply.Report {
        try await send(.init(op: .report, seq: total), ResumeSliceReply.Report.self)
    }

    func close() async {
        _ = try? await send(.init(op: .close), ResumeSliceReply.Done.self)
        try? requests.close()
        let deadline = monotonicNanos() + 10_000_000_000
        while process.isRunning && monotonicNanos() < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        if process.isRunning { process.terminate() }
    }
}

/// The lines a pipe carries, each read on a dispatch thread: a read blocks its thread, which the concurrency pool's
/// few threads must not do.
final class PipeLines: Sendable {
    private let handle: FileHandle
    private let pending = Mutex(Data())

    init(_ handle: FileHandle) { self.handle = handle }

    /// The next line without its newline; nil at the end of the pipe.
    func next() async -> Data? {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(returning: self.readLine()) }
        }
    }

    private func readLine() -> Data? {
        while true {
            let line: Data? = pending.withLock { buffer in
                guard let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) else { return nil }
                let line = buffer[buffer.startIndex..<newline]
                buffer = Data(buffer[(newline + 1)...])
                return Data(line)
            }
            if let line { return line }
            let chunk = handle.availableData
            if chunk.isEmpty { return nil }
            pending.withLock { $0.append(chunk) }
        }
    }
}

/// `statushub-load resume-slice`: the child process of a `resume` run too large for one process's descriptors.
/// Not for direct use.
struct ResumeSliceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resume-slice",
        abstract: "A share of a resume run's subscribers, driven by `statushub-load resume` over standard input and output.",
        shouldDisplay: false)

    @Option(help: "The index of the slice's first subscriber in the run.")
    var first: Int

    @Option(help: "Subscribers in this slice.")
    var subscribers: Int

    @Option(help: ArgumentHelp(SourceAddresses.help))
    var sourceAddresses: SourceAddresses?

    @Option(help: "The line every subscriber listens to (line:<line>:*).")
    var line = "Line-0"

    @Option(help: "Event-loop threads (default: the CPUs this process may use).")
    var threads: Int?

    @Option(help: "The slice's name in progress lines.")
    var label = "slice"

    struct MissingField: Error, CustomStringConvertible {
        var field: String
        var operation: ResumeSliceRequest.Operation
        var description: String { "resume-slice: \(operation.rawValue) needs \(field)" }
    }

    func run() async throws {
        let slice = LocalResumeSlice(
            first: first, count: subscribers, sources: sourceAddresses, line: line,
            threads: threads ?? CPUAffinity.allowedCPUs(), label: "\(label): ")
        let stdin = PipeLines(FileHandle.standardInput)
        while let text = await stdin.next() {
            let request = try JSONDecoder().decode(ResumeSliceRequest.self, from: text)
            func required<Value>(_ value: Value?, _ field: String) throws -> Value {
                guard let value else { throw MissingField(field: field, operation: request.op) }
                return value
            }
            switch request.op {
            case .connect:
                try reply(await slice.connect(
                    url: required(request.url, "url"), concurrency: required(request.concurrency, "concurrency"),
                    timeout: required(request.timeout, "timeout")))
            case .wait:
                try reply(await slice.wait(seq: required(request.seq, "seq"), timeout: required(request.timeout, "timeout")))
            case .waitClosed:
                try reply(await slice.waitClosed(timeout: required(request.timeout, "timeout")))
            case .resume:
                try reply(await slice.resume(url: required(request.url, "url"), timeout: required(request.timeout, "timeout")))
            case .report:
                try reply(await slice.report(total: required(request.seq, "seq")))
            case .close:
                await slice.close()
                try reply(ResumeSliceReply.Done())
                return
            }
        }
        await slice.close()
    }

    private func reply(_ value: some Encodable) throws {
        try FileHandle.standardOutput.write(contentsOf: JSONEncoder().encode(value) + Data("\n".utf8))
    }
}
