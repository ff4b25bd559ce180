import CHiredis

/// One decoded RESP2 reply. Error replies are values, not thrown errors: a pipeline keeps going past a failed
/// command, and the caller decides what an error means for it.
public enum RedisReply: Sendable, Hashable {
    /// A bulk string: binary-safe bytes.
    case string([UInt8])
    /// A simple status line such as `OK` or `PONG`.
    case status(String)
    case integer(Int64)
    case array([RedisReply])
    /// The null bulk string or null array.
    case null
    case error(String)

    /// The bytes of a bulk string or status.
    public var bytes: [UInt8]? {
        switch self {
        case .string(let bytes): bytes
        case .status(let text): Array(text.utf8)
        default: nil
        }
    }

    /// A bulk string or status as text.
    public var text: String? {
        switch self {
        case .string(let bytes): String(decoding: bytes, as: UTF8.self)
        case .status(let text): text
        default: nil
        }
    }

    public var integer: Int64? {
        if case .integer(let value) = self { return value }
        return nil
    }

    public var array: [RedisReply]? {
        if case .array(let elements) = self { return elements }
        return nil
    }

    public var isNull: Bool { self == .null }

    public var errorMessage: String? {
        if case .error(let message) = self { return message }
        return nil
    }

    /// The reply itself, or `RedisError.reply` when Redis answered with an error.
    public func orThrow() throws(RedisError) -> RedisReply {
        if case .error(let message) = self { throw .reply(message) }
        return self
    }
}

extension RedisReply {
    /// Copies a hiredis reply tree into Swift values. The caller still owns `reply` and must free it.
    init(hiredis reply: UnsafePointer<redisReply>) {
        let node = reply.pointee
        switch node.type {
        case REDIS_REPLY_STRING:
            self = .string(Self.bytes(node.str, node.len))
        case REDIS_REPLY_STATUS:
            self = .status(String(decoding: Self.bytes(node.str, node.len), as: UTF8.self))
        case REDIS_REPLY_ERROR:
            self = .error(String(decoding: Self.bytes(node.str, node.len), as: UTF8.self))
        case REDIS_REPLY_INTEGER:
            self = .integer(Int64(node.integer))
        case REDIS_REPLY_ARRAY:
            var elements: [RedisReply] = []
            elements.reserveCapacity(node.elements)
            for index in 0..<node.elements {
                if let element = node.element[index] {
                    elements.append(RedisReply(hiredis: element))
                } else {
                    elements.append(.null)
                }
            }
            self = .array(elements)
        default:
            // REDIS_REPLY_NIL, and anything a newer hiredis might add that RESP2 cannot carry.
            self = .null
        }
    }

    private static func bytes(_ pointer: UnsafeMutablePointer<CChar>?, _ count: Int) -> [UInt8] {
        guard let pointer, count > 0 else { return [] }
        return Array(UnsafeRawBufferPointer(start: pointer, count: count))
    }
}
