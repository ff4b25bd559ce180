import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A child process the tests start (redis-server, mosquitto, a `statushub` node, a CLI run), spawned with
/// `posix_spawn` rather than Foundation's `Process`.
///
/// Why not `Process`: on Linux, `Process.run()` lists `/proc/self/fd` to close the parent's descriptors in the child
/// and copies each whole 256-byte `d_name` out of readdir's buffer; when a record ends the buffer and the next page is
/// unmapped, that read faults. It crashed this suite in CI (`__memcpy_avx512_unaligned_erms` in `Process.run()`;
/// swift-corelibs-foundation#5472, fixed after Swift 6.3.1). swift-subprocess avoids it, but its closure-scoped
/// processes do not fit servers that a test keeps, pauses, kills and restarts across its body. So the spawn is
/// done here: descriptors 3 and up are closed in the child by `posix_spawn_file_actions_addclosefrom_np` (glibc
/// 2.34), the signal mask is cleared (the concurrency pool's threads block most signals, and a child inherits its
/// parent thread's mask: it would ignore SIGTERM), and the child gets its own process group, as `Process` did.
final class ChildProcess: Sendable {
    /// Where a child's standard stream goes.
    enum Stream {
        case null
        /// The test's own stream.
        case inherit
        /// A pipe whose other end the test reads (stdout, stderr) or writes (stdin); the parent's copy of the
        /// child's end is closed after the spawn, so reading to the end stops when the child exits.
        case pipe(Pipe)
    }

    struct SpawnError: Error, CustomStringConvertible {
        var description: String
    }

    let processIdentifier: pid_t
    /// The wait status once the child has been reaped.
    private let reaped = Mutex<Int32?>(nil)

    private init(pid: pid_t) { processIdentifier = pid }

    /// - Parameter environment: the child's whole environment; nil: the test's own.
    static func spawn(
        _ executable: String, _ arguments: [String], environment: [String: String]? = nil,
        stdin: Stream = .null, stdout: Stream = .null, stderr: Stream = .null
    ) throws -> ChildProcess {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var childEnds: [FileHandle] = []
        for (stream, target) in [(stdin, Int32(0)), (stdout, 1), (stderr, 2)] {
            switch stream {
            case .null:
                posix_spawn_file_actions_addopen(&actions, target, "/dev/null", target == 0 ? O_RDONLY : O_WRONLY, 0)
            case .inherit:
                break
            case .pipe(let pipe):
                let end = target == 0 ? pipe.fileHandleForReading : pipe.fileHandleForWriting
                posix_spawn_file_actions_adddup2(&actions, end.fileDescriptor, target)
                if !childEnds.contains(where: { $0 === end }) { childEnds.append(end) }
            }
        }
        guard let closeFrom = Self.addCloseFrom else { throw SpawnError(description: "glibc lacks posix_spawn_file_actions_addclosefrom_np") }
        _ = closeFrom(&actions, 3)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        // SIGPIPE as a shell would leave it, whatever the test process does with it.
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGPIPE)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP))

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let environmentStrings = environment.map { $0.map { strdup("\($0.key)=\($0.value)") } + [nil] }
        defer { environmentStrings?.forEach { free($0) } }
        var pid: pid_t = 0
        let result = environmentStrings.map { envp in
            posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        } ?? posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
        guard result == 0 else { throw SpawnError(description: "cannot start \(executable): \(String(cString: strerror(result)))") }
        for end in childEnds { try? end.close() }
        return ChildProcess(pid: pid)
    }

    /// Runs a command to its end and returns its exit status and standard output.
    static func run(_ executable: String, _ arguments: [String], stderr: Stream = .null) throws -> (status: Int32, output: String) {
        let output = Pipe()
        let child = try spawn(executable, arguments, stdout: .pipe(output), stderr: stderr)
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        child.waitUntilExit()
        return (child.terminationStatus, text)
    }

    var isRunning: Bool { reap(blocking: false) == nil }

    /// The exit code, or the signal that ended it (as `Process` reports it); -1 while it runs.
    var terminationStatus: Int32 {
        guard let status = reap(blocking: false) else { return -1 }
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : signal
    }

    func signal(_ signal: Int32) {
        if isRunning { _ = kill(processIdentifier, signal) }
    }

    func terminate() { signal(SIGTERM) }

    /// Blocks until the child has exited (it is reaped here).
    func waitUntilExit() {
        _ = reap(blocking: true)
    }

    /// Waits without holding a thread of the pool, polling.
    func exited(within limit: Duration) async -> Bool {
        let deadline = ContinuousClock.now + limit
        while isRunning, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(10)) }
        return !isRunning
    }

    private func reap(blocking: Bool) -> Int32? {
        if let status = reaped.withLock({ $0 }) { return status }
        var status: Int32 = 0
        while true {
            let result = waitpid(processIdentifier, &status, blocking ? 0 : WNOHANG)
            if result == processIdentifier {
                reaped.withLock { $0 = status }
                return status
            }
            if result == 0 { return nil }
            if errno == EINTR { continue }
            // ECHILD: another caller reaped it in the meantime and is about to record the status.
            for _ in 0..<1000 {
                if let status = reaped.withLock({ $0 }) { return status }
                usleep(1000)
            }
            return reaped.withLock { $0 } ?? 0
        }
    }

    /// glibc declares `posix_spawn_file_actions_addclosefrom_np` only for `_GNU_SOURCE`, which the Glibc module
    /// does not define; it is looked up once instead.
    private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    private static let addCloseFrom: AddCloseFrom? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(symbol, to: AddCloseFrom.self)
    }()
}
