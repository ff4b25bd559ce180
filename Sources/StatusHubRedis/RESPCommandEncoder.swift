import CHiredis
import NIOCore

/// Turns command arguments into RESP bytes with hiredis's `redisFormatCommandArgv`.
///
/// Pure and thread-safe, so callers encode on their own task and the event loop only copies bytes out.
enum RESPCommandEncoder {
    static func encode(_ arguments: [[UInt8]], into buffer: inout ByteBuffer) throws(RedisError) {
        guard !arguments.isEmpty else { throw .unexpectedReply("a command needs at least one argument") }
        guard arguments.count <= Int(Int32.max) else { throw .unexpectedReply("too many arguments") }

        // hiredis wants an array of pointers that are all valid at once; one flat copy gives them a single
        // owner for the duration of the call. The trailing byte keeps the base address non-nil even when every
        // argument is empty.
        var lengths: [Int] = []
        lengths.reserveCapacity(arguments.count)
        var flat: [UInt8] = []
        flat.reserveCapacity(arguments.reduce(1) { $0 + $1.count })
        for argument in arguments {
            lengths.append(argument.count)
            flat.append(contentsOf: argument)
        }
        flat.append(0)

        let result: Result<Void, RedisError> = flat.withUnsafeBufferPointer { flatBytes in
            let base = UnsafeRawPointer(flatBytes.baseAddress!).assumingMemoryBound(to: CChar.self)
            var pointers: [UnsafePointer<CChar>?] = []
            pointers.reserveCapacity(lengths.count)
            var offset = 0
            for length in lengths {
                pointers.append(base + offset)
                offset += length
            }
            var target: UnsafeMutablePointer<CChar>?
            let written = pointers.withUnsafeMutableBufferPointer { argv in
                lengths.withUnsafeBufferPointer { argvLengths in
                    redisFormatCommandArgv(&target, Int32(lengths.count), argv.baseAddress, argvLengths.baseAddress)
                }
            }
            guard written >= 0, let target else { return .failure(.protocolError("hiredis could not format a command")) }
            defer { redisFreeCommand(target) }
            buffer.writeBytes(UnsafeRawBufferPointer(start: target, count: Int(written)))
            return .success(())
        }
        try result.get()
    }

    static func encode(_ arguments: [String], into buffer: inout ByteBuffer) throws(RedisError) {
        try encode(arguments.map { Array($0.utf8) }, into: &buffer)
    }
}
