import CMosquitto
import Foundation
import Synchronization

/// One message as libmosquitto handed it over, copied out of the library's memory.
public struct MQTTMessage: Sendable {
    public var topic: String
    public var payload: [UInt8]
    public var qos: Int
    public var retain: Bool

    public init(topic: String, payload: [UInt8], qos: Int = 1, retain: Bool = false) {
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
    }
}

/// Where an MQTT client connects, and as whom.
public struct MQTTEndpoint: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var useTLS: Bool
    public var clientID: String
    public var username: String?
    public var password: String?
    /// PEM CA bundle that verifies the broker (TLS); nil: the system's trust store.
    public var caFile: String?
    /// Client certificate and key, for brokers that ask for one.
    public var certificateFile: String?
    public var privateKeyFile: String?
    public var keepAliveSeconds: Int
    /// Reconnect backoff: the delay starts here and doubles up to `reconnectMaxSeconds`.
    public var reconnectInitialSeconds: Int
    public var reconnectMaxSeconds: Int

    public init(
        host: String, port: Int, useTLS: Bool = false, clientID: String, username: String? = nil, password: String? = nil,
        caFile: String? = nil, certificateFile: String? = nil, privateKeyFile: String? = nil, keepAliveSeconds: Int = 30,
        reconnectInitialSeconds: Int = 1, reconnectMaxSeconds: Int = 10
    ) {
        self.host = host
        self.port = port
        self.useTLS = useTLS
        self.clientID = clientID
        self.username = username
        self.password = password
        self.caFile = caFile
        self.certificateFile = certificateFile
        self.privateKeyFile = privateKeyFile
        self.keepAliveSeconds = keepAliveSeconds
        self.reconnectInitialSeconds = reconnectInitialSeconds
        self.reconnectMaxSeconds = reconnectMaxSeconds
    }

    /// `mqtt://host[:1883]` or `mqtts://host[:8883]`.
    public init(url: String, clientID: String) throws(MQTTError) {
        guard let components = URLComponents(string: url), let scheme = components.scheme, let host = components.host, !host.isEmpty
        else { throw MQTTError("'\(url)' is not a broker URL; use mqtt://host:1883 or mqtts://host:8883") }
        switch scheme {
        case "mqtt", "tcp": self.init(host: host, port: components.port ?? 1883, clientID: clientID)
        case "mqtts", "ssl": self.init(host: host, port: components.port ?? 8883, useTLS: true, clientID: clientID)
        default: throw MQTTError("'\(scheme)://' is not supported; use mqtt:// or mqtts://")
        }
    }
}

public struct MQTTError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }

    init(_ what: String, code: Int32) {
        description = "\(what): \(String(cString: mosquitto_strerror(code)))"
    }
}

/// What the client reports from its network thread. Handlers run on that thread: they must not block for long
/// (the bridge's message handler waits only while its hand-off to the engine is full — back-pressure that stops
/// the client reading from the broker, which is the point).
public struct MQTTHandlers: Sendable {
    /// The broker accepted the connection (every reconnect too): subscribe here, subscriptions do not survive a
    /// clean session.
    public var connected: @Sendable (MosquittoClient) -> Void = { _ in }
    /// The connection ended; the network thread reconnects unless the client is stopping.
    public var disconnected: @Sendable (_ reason: String) -> Void = { _ in }
    public var message: @Sendable (MQTTMessage) -> Void = { _ in }

    public init() {}
}

/// An MQTT 3.1.1 client over libmosquitto (Debian's libmosquitto-dev, the broker's own client library): the
/// protocol, TLS and keep-alive are the library's; the client's own network thread (`networkLoop`) polls the
/// socket, reconnects with exponential backoff and makes the blocking calls (DNS, TCP connect), so nothing here
/// blocks an event loop or the cooperative pool.
///
/// QoS 1: libmosquitto 2.0 sends the PUBACK of an incoming message *before* it calls the message handler
/// (`handle__publish`: `send__puback`, then `on_message`), and offers no manual acknowledgement. What that means
/// for a crash is in docs/operations.md.
public final class MosquittoClient: Sendable {
    /// libmosquitto's client. Publish and subscribe may be called from any thread: the library guards its packet
    /// queues with its own mutexes; everything else runs on the network thread.
    private struct Handle: @unchecked Sendable {
        let pointer: OpaquePointer
    }

    private let handleBox: Handle
    private var handle: OpaquePointer { handleBox.pointer }
    /// False once `stop` destroyed the handle: a publish or subscribe after that (a test's or edge node's late
    /// call, a second `stop`'s NDEATH) gets an error instead of writing into freed memory. Held across the call, so
    /// `stop` cannot destroy the handle under a caller; the network thread never takes it except in a callback
    /// that subscribes or publishes, and the handle is destroyed only after that thread ended.
    private let handleAlive = Mutex(true)
    private let handlers: MQTTHandlers
    private let state = Mutex(State())

    private struct State {
        var connected = false
        var lastError: String?
        var started = false
        var stopped = false
        var stopping = false
        var sendWill = false
        var loopEnded = false
        var loopFinished: CheckedContinuation<Void, Never>?
    }

    private static let libraryReady: Bool = {
        mosquitto_lib_init() == MOSQ_ERR_SUCCESS.rawValue
    }()

    /// - Parameters:
    ///   - will: published by the broker when the connection ends without a DISCONNECT (Sparkplug's STATE and NDEATH).
    ///   - cleanSession: true for a Sparkplug host (the specification requires it) and for the bridge.
    public init(endpoint: MQTTEndpoint, will: MQTTMessage? = nil, cleanSession: Bool = true, handlers: MQTTHandlers) throws(MQTTError) {
        guard Self.libraryReady else { throw MQTTError("libmosquitto failed to initialise") }
        guard let handle = mosquitto_new(endpoint.clientID, cleanSession, nil) else {
            throw MQTTError("mosquitto_new failed for client id '\(endpoint.clientID)'")
        }
        self.handleBox = Handle(pointer: handle)
        self.handlers = handlers
        self.endpoint = endpoint
        mosquitto_user_data_set(handle, Unmanaged.passUnretained(self).toOpaque())
        mosquitto_connect_callback_set(handle, onConnect)
        mosquitto_disconnect_callback_set(handle, onDisconnect)
        mosquitto_message_callback_set(handle, onMessage)
        do {
            if endpoint.username != nil || endpoint.password != nil {
                try check(mosquitto_username_pw_set(handle, endpoint.username, endpoint.password), "credentials")
            }
            if endpoint.useTLS {
                // nil CA file: the system's trust store (MOSQ_OPT_TLS_USE_OS_CERTS).
                if endpoint.caFile == nil { try check(mosquitto_int_option(handle, MOSQ_OPT_TLS_USE_OS_CERTS, 1), "TLS trust store") }
                try check(
                    mosquitto_tls_set(handle, endpoint.caFile, nil, endpoint.certificateFile, endpoint.privateKeyFile, nil), "TLS")
            }
            if let will {
                try check(
                    mosquitto_will_set(handle, will.topic, Int32(will.payload.count), will.payload, Int32(will.qos), will.retain), "will")
            }
        } catch {
            mosquitto_destroy(handle)
            throw error
        }
        // The C callbacks get this object back through `userdata`: it stays retained until `stop` destroyed the handle.
        _ = Unmanaged.passRetained(self)
    }

    private let endpoint: MQTTEndpoint

    /// Starts the network thread and the first connection attempt; returns at once. A broker that is not up yet
    /// is retried with the backoff, like a lost connection.
    public func start() async {
        guard state.withLock({ state in
            defer { state.started = true }
            return !state.started && !state.stopped
        }) else { return }
        let thread = Thread { [self] in
            networkLoop()
            let finished = state.withLock { state in
                state.loopEnded = true
                defer { state.loopFinished = nil }
                return state.loopFinished
            }
            finished?.resume()
        }
        thread.name = "mqtt \(endpoint.clientID)"
        thread.start()
    }

    /// The client's own network thread: poll(2) on its socket, then libmosquitto's read, write and housekeeping
    /// (keep-alive) steps; on a failure, reconnect with exponential backoff. Not `mosquitto_loop_start`: its loop
    /// uses select(2) and gives up for good (`MOSQ_ERR_INVAL`) when the socket's descriptor is 1024 or more — which
    /// it is in a hub holding a thousand WebSocket connections. Blocking calls (DNS, TCP connect) are fine here.
    private func networkLoop() {
        let handle = self.handle
        let success = MOSQ_ERR_SUCCESS.rawValue
        var rc = mosquitto_connect(handle, endpoint.host, Int32(endpoint.port), Int32(endpoint.keepAliveSeconds))
        var delay = Double(max(1, endpoint.reconnectInitialSeconds))
        while !isStopping {
            if rc != success {
                let reason = MQTTError("connect to \(endpoint.host):\(endpoint.port)", code: rc).description
                state.withLock {
                    if $0.lastError == nil || !$0.connected { $0.lastError = $0.lastError ?? reason }
                    $0.connected = false
                }
                // Interruptible by `stop`: 50 ms steps.
                let until = ContinuousClock.now + .milliseconds(Int64(delay * 1000))
                while ContinuousClock.now < until, !isStopping { usleep(50_000) }
                if isStopping { break }
                delay = min(delay * 2, Double(max(endpoint.reconnectInitialSeconds, endpoint.reconnectMaxSeconds)))
                rc = mosquitto_reconnect(handle)
                if rc != success { state.withLock { $0.lastError = MQTTError("connect to \(endpoint.host):\(endpoint.port)", code: rc).description } }
                continue
            }
            let fd = mosquitto_socket(handle)
            guard fd >= 0 else {
                rc = MOSQ_ERR_NO_CONN.rawValue
                continue
            }
            var events = Int16(POLLIN)
            if mosquitto_want_write(handle) { events |= Int16(POLLOUT) }
            var descriptor = pollfd(fd: fd, events: events, revents: 0)
            // Short: messages queued from a callback (which libmosquitto does not write at once) and keep-alive
            // go out within it; publishes from other threads are written by the caller.
            _ = poll(&descriptor, 1, 20)
            if descriptor.revents & Int16(POLLIN | POLLERR | POLLHUP) != 0 { rc = mosquitto_loop_read(handle, 1) }
            if rc == success, mosquitto_want_write(handle) { rc = mosquitto_loop_write(handle, 1) }
            if rc == success { rc = mosquitto_loop_misc(handle) }
            if rc == success, isConnected { delay = Double(max(1, endpoint.reconnectInitialSeconds)) }
        }
        let sendWill = state.withLock { $0.sendWill }
        let fd = mosquitto_socket(handle)
        if sendWill {
            // MQTT 3.1.1 has no "disconnect with will": the socket goes without a DISCONNECT, as in a crash.
            if fd >= 0 { shutdown(fd, Int32(SHUT_RDWR)) }
        } else if fd >= 0 {
            mosquitto_disconnect(handle)
            // What is queued (the DISCONNECT, a last STATE) goes out before the socket closes; at most a second.
            let until = ContinuousClock.now + .seconds(1)
            while mosquitto_want_write(handle), ContinuousClock.now < until {
                if mosquitto_loop_write(handle, 1) != success { break }
                usleep(1_000)
            }
        }
    }

    private var isStopping: Bool { state.withLock { $0.stopping } }

    /// Sends DISCONNECT (so the broker does not publish the will), stops the network thread and frees the client.
    /// `sendWill: true` instead drops the socket without DISCONNECT, as a crash would: the broker publishes the will.
    public func stop(sendWill: Bool = false) async {
        guard state.withLock({ state in
            defer { state.stopped = true }
            return !state.stopped
        }) else { return }
        let started = state.withLock { state in
            state.stopping = true
            state.sendWill = sendWill
            return state.started
        }
        if started {
            await withCheckedContinuation { (finished: CheckedContinuation<Void, Never>) in
                let ended = state.withLock { state in
                    if !state.loopEnded { state.loopFinished = finished }
                    return state.loopEnded
                }
                if ended { finished.resume() }
            }
        }
        await onOwnThread { [self] in
            handleAlive.withLock { alive in
                alive = false
                mosquitto_destroy(handle)
            }
        }
        state.withLock { $0.connected = false }
        Unmanaged.passUnretained(self).release()
    }

    public var isConnected: Bool { state.withLock { $0.connected } }
    public var lastError: String? { state.withLock { $0.lastError } }

    /// Queues a message for the network thread (never blocks on the socket).
    public func publish(_ message: MQTTMessage) throws(MQTTError) {
        try withLiveHandle("publish to \(message.topic)") { handle in
            mosquitto_publish(handle, nil, message.topic, Int32(message.payload.count), message.payload, Int32(message.qos), message.retain)
        }
    }

    public func subscribe(_ filter: String, qos: Int) throws(MQTTError) {
        try withLiveHandle("subscribe to \(filter)") { handle in mosquitto_subscribe(handle, nil, filter, Int32(qos)) }
    }

    private func withLiveHandle(_ what: String, _ call: (OpaquePointer) -> Int32) throws(MQTTError) {
        let handle = self.handle
        guard let rc = handleAlive.withLock({ alive in alive ? call(handle) : nil }) else {
            throw MQTTError("\(what): the client is stopped")
        }
        try check(rc, what)
    }

    private func check(_ rc: Int32, _ what: String) throws(MQTTError) {
        guard rc == MOSQ_ERR_SUCCESS.rawValue else { throw MQTTError(what, code: rc) }
    }

    fileprivate func connected(code: Int32) {
        guard code == 0 else {
            state.withLock { $0.lastError = "broker refused the connection: \(String(cString: mosquitto_connack_string(code)))" }
            return
        }
        state.withLock {
            $0.connected = true
            $0.lastError = nil
        }
        handlers.connected(self)
    }

    fileprivate func disconnected(code: Int32) {
        let reason = code == 0 ? "disconnected" : "connection lost: \(String(cString: mosquitto_strerror(code)))"
        state.withLock {
            $0.connected = false
            $0.lastError = reason
        }
        handlers.disconnected(reason)
    }

    fileprivate func received(_ message: MQTTMessage) {
        handlers.message(message)
    }
}

// The callbacks libmosquitto calls on its network thread. Non-isolated `@convention(c)` globals: a closure formed
// in an actor-isolated context would carry that isolation, and Swift traps when such a closure runs on a foreign
// thread (shared/notes/mqtt-from-swift.md). The client comes back through `userdata`.
private let onConnect: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, Int32) -> Void = { _, userdata, code in
    guard let userdata else { return }
    Unmanaged<MosquittoClient>.fromOpaque(userdata).takeUnretainedValue().connected(code: code)
}

private let onDisconnect: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, Int32) -> Void = { _, userdata, code in
    guard let userdata else { return }
    Unmanaged<MosquittoClient>.fromOpaque(userdata).takeUnretainedValue().disconnected(code: code)
}

private let onMessage: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, UnsafePointer<mosquitto_message>?) -> Void = {
    _, userdata, raw in
    guard let userdata, let raw else { return }
    let message = raw.pointee
    let payload: [UInt8] = message.payloadlen > 0 && message.payload != nil
        ? Array(UnsafeRawBufferPointer(start: message.payload, count: Int(message.payloadlen)))
        : []
    let topic = message.topic.map { String(cString: $0) } ?? ""
    Unmanaged<MosquittoClient>.fromOpaque(userdata).takeUnretainedValue()
        .received(MQTTMessage(topic: topic, payload: payload, qos: Int(message.qos), retain: message.retain))
}

/// Runs a blocking call on a fresh thread and waits for it without holding an event loop or a pool thread.
func onOwnThread(_ body: @escaping @Sendable () -> Void) async {
    await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
        Thread.detachNewThread {
            body()
            done.resume()
        }
    }
}
