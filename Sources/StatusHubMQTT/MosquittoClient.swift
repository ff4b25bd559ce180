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
    /// libmosquitto's own reconnect: the delay starts here and doubles up to `reconnectMaxSeconds`.
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
    /// The connection ended; libmosquitto reconnects by itself unless the client is stopping.
    public var disconnected: @Sendable (_ reason: String) -> Void = { _ in }
    public var message: @Sendable (MQTTMessage) -> Void = { _ in }

    public init() {}
}

/// An MQTT 3.1.1 client over libmosquitto (Debian's libmosquitto-dev, the broker's own client library): the
/// protocol, TLS, keep-alive and reconnect with exponential backoff are the library's; its network thread
/// (`mosquitto_loop_start`) does all socket I/O, so nothing here blocks an event loop or the cooperative pool.
/// Calls that may block (DNS in connect, joining the thread on stop) run on a thread of their own.
///
/// QoS 1: libmosquitto 2.0 sends the PUBACK of an incoming message *before* it calls the message handler
/// (`handle__publish`: `send__puback`, then `on_message`), and offers no manual acknowledgement. What that means
/// for a crash is in docs/operations.md.
public final class MosquittoClient: Sendable {
    /// libmosquitto's client. In threaded mode (`mosquitto_loop_start`) publish, subscribe and disconnect may be
    /// called from any thread: the library locks its own state.
    private struct Handle: @unchecked Sendable {
        let pointer: OpaquePointer
    }

    private let handleBox: Handle
    private var handle: OpaquePointer { handleBox.pointer }
    private let handlers: MQTTHandlers
    private let state = Mutex(State())

    private struct State {
        var connected = false
        var lastError: String?
        var started = false
        var stopped = false
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
            try check(mosquitto_reconnect_delay_set(
                handle, UInt32(max(1, endpoint.reconnectInitialSeconds)),
                UInt32(max(endpoint.reconnectInitialSeconds, endpoint.reconnectMaxSeconds, 1)), true), "reconnect delay")
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
        let (box, endpoint) = (self.handleBox, self.endpoint)
        await onOwnThread {
            let handle = box.pointer
            // Resolving the host name blocks: this is why it runs here. A failure is retried by the loop.
            let rc = mosquitto_connect_async(handle, endpoint.host, Int32(endpoint.port), Int32(endpoint.keepAliveSeconds))
            if rc != MOSQ_ERR_SUCCESS.rawValue {
                self.state.withLock { $0.lastError = MQTTError("connect to \(endpoint.host):\(endpoint.port)", code: rc).description }
            }
            mosquitto_loop_start(handle)
        }
    }

    /// Sends DISCONNECT (so the broker does not publish the will), stops the network thread and frees the client.
    /// `sendWill: true` instead drops the socket without DISCONNECT, as a crash would: the broker publishes the will.
    public func stop(sendWill: Bool = false) async {
        guard state.withLock({ state in
            defer { state.stopped = true }
            return !state.stopped
        }) else { return }
        let box = self.handleBox
        let started = state.withLock { $0.started }
        await onOwnThread {
            let handle = box.pointer
            if started {
                if sendWill {
                    // MQTT 5's "disconnect with will" would do; on 3.1.1 the socket has to go without a DISCONNECT.
                    // The broker sees the socket close without a DISCONNECT; the DISCONNECT below then fails to go out
                    // and only tells the network thread to end.
                    let fd = mosquitto_socket(handle)
                    if fd >= 0 { shutdown(fd, Int32(SHUT_RDWR)) }
                    mosquitto_disconnect(handle)
                    mosquitto_loop_stop(handle, false)
                } else {
                    mosquitto_disconnect(handle)
                    mosquitto_loop_stop(handle, false)
                }
            }
            mosquitto_destroy(handle)
        }
        state.withLock { $0.connected = false }
        Unmanaged.passUnretained(self).release()
    }

    public var isConnected: Bool { state.withLock { $0.connected } }
    public var lastError: String? { state.withLock { $0.lastError } }

    /// Queues a message for the network thread (never blocks on the socket).
    public func publish(_ message: MQTTMessage) throws(MQTTError) {
        try check(
            mosquitto_publish(handle, nil, message.topic, Int32(message.payload.count), message.payload, Int32(message.qos), message.retain),
            "publish to \(message.topic)")
    }

    public func subscribe(_ filter: String, qos: Int) throws(MQTTError) {
        try check(mosquitto_subscribe(handle, nil, filter, Int32(qos)), "subscribe to \(filter)")
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
