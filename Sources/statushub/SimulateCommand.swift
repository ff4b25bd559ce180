import ArgumentParser
import Foundation
import StatusHubCore

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

struct SimulateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulate",
        abstract: "Run a simulated plant against a hub, so there is something to look at.",
        discussion: """
            Lines of machines, operators, materials and work orders publish as a plant's MES would (seed 003 §4.3): \
            machine status every 30 s and on change, operator status on change, materials every 5 min and on \
            transaction, work-order progress every 30 s, predictions every 2 min, metrics every minute; each machine \
            moves between running, idle, breakdown, maintenance and offline with realistic dwell times, and a \
            breakdown raises an alert. Quality and KPI events come at plausible rates. --silent machines stop \
            publishing after a minute or two, so their states go stale. --speed runs the plant faster than real time.

              statushub simulate --lines 3 --machines 8 --speed 10
            """
    )

    @Option(name: .long, help: "Hub base URL.")
    var url = "http://127.0.0.1:8080"

    @Option(name: .long, help: "Publisher API key. Default: $STATUSHUB_API_KEY.")
    var key: String?

    @Option(name: .long, help: "Production lines (Line-1 …).")
    var lines = 3

    @Option(name: .long, help: "Machines per line.")
    var machines = 8

    @Option(name: .long, help: "Operators per line.")
    var operators = 6

    @Option(name: .customLong("work-orders"), help: "Work orders in progress per line.")
    var workOrders = 2

    @Option(name: .long, help: "Machines (the plant's last) that go silent after a minute or two of plant time.")
    var silent = 1

    @Option(name: .long, help: "Plant seconds per wall-clock second.")
    var speed = 1.0

    @Option(name: .long, help: "Seed: the same seed gives the same plant and the same sequence of events.")
    var seed: UInt64 = 3

    @Option(name: .long, help: "Stop after this many wall-clock seconds (0: run until interrupted).")
    var duration = 0.0

    @Option(name: .long, help: "MQTT broker URL: machine status goes as Sparkplug B edge nodes (one per line) through it, for a hub whose mqtt.sparkplug bridge listens; the rest over HTTP.")
    var sparkplug: String?

    func validate() throws {
        guard speed > 0, speed <= 1000 else { throw ValidationError("--speed must be above 0 and at most 1000") }
        guard (1...100).contains(lines), (1...200).contains(machines), (0...200).contains(operators) else {
            throw ValidationError("--lines 1–100, --machines 1–200, --operators 0–200")
        }
    }

    func run() async throws {
        let endpoint = try HubURL.endpoint(url, "/v1/events")
        var plant = Plant(.init(
            lines: lines, machinesPerLine: machines, operatorsPerLine: operators, workOrdersPerLine: workOrders, silentMachines: silent, seed: seed))
        let apiKey = key ?? ProcessInfo.processInfo.environment["STATUSHUB_API_KEY"]
        var edgeNodes: SimulatedSparkplugLines?
        if let sparkplug {
            edgeNodes = try await SimulatedSparkplugLines.start(broker: sparkplug, machines: plant.machines.map { ($0.id, $0.line) })
        }
        let start = ContinuousClock.now
        var sent = 0, rejected = 0, failures = 0
        var lastReport = ContinuousClock.now
        print("simulating \(lines) lines × \(machines) machines at \(speed)× against \(url); open \(url)/ to watch")
        while duration <= 0 || start.duration(to: .now).seconds < duration {
            var events = plant.advance(to: start.duration(to: .now).seconds * speed)
            if let edgeNodes { events = try edgeNodes.publishMachineStatus(events) }
            if !events.isEmpty {
                var request = URLRequest(url: endpoint)
                request.httpMethod = "POST"
                request.setValue("application/json", forHTTPHeaderField: "Content-Type")
                if let apiKey { request.setValue("Bearer \(apiKey)", forHTTPHeaderField: "Authorization") }
                request.httpBody = Data("[\(events.joined(separator: ","))]".utf8)
                do {
                    let (data, status) = try await Resend.post(request, retries: Self.resendAttempts)
                    let answer = (try? JSONValue.parse(Array(data)))
                    var refused: [JSONValue] = []
                    if case .array(let items)? = answer?["rejected"] { refused = items }
                    sent += events.count - refused.count
                    rejected += refused.count
                    if status >= 400, refused.isEmpty { failures += 1 }
                    // A refusal is a bug in the simulator or a catalog change: say which, once per batch.
                    if let first = refused.first {
                        FileHandle.standardError.write(Data("HTTP \(status): refused \(first)\n".utf8))
                    } else if status >= 400 {
                        FileHandle.standardError.write(Data("HTTP \(status): \(String(decoding: data.prefix(300), as: UTF8.self))\n".utf8))
                    }
                } catch {
                    failures += 1
                    FileHandle.standardError.write(Data("\(HubURL.unreachable(url, error)); retrying\n".utf8))
                    try await Task.sleep(for: .seconds(1))
                }
            }
            if lastReport.duration(to: .now) > .seconds(10) {
                lastReport = .now
                let breakdowns = plant.machines.filter { $0.status == .breakdown }.map(\.id)
                print("plant time \(Int(plant.now)) s: \(sent) events accepted, \(rejected) refused, \(failures) failed requests; down: \(breakdowns.joined(separator: " "))")
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        await edgeNodes?.stop()
        print("done: \(sent) events accepted, \(rejected) refused, \(failures) failed requests")
        // Refusals are the simulator's bugs; a run whose every request failed simulated nothing.
        if rejected > 0 || (failures > 0 && sent == 0) { throw ExitCode(1) }
    }

    /// Resends after a 503: the plant's events are its state, and one dropped (a status change, an allocation) leaves
    /// the hub's picture wrong until the next. It counted them failed and went on, so a Redis outage lost the
    /// simulated plant's events that the hub had asked to be sent again.
    static let resendAttempts = 5
}
