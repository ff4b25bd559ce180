import ArgumentParser
import Foundation
import StatusHubServer

/// `statushub hash-key`: prints the SHA-256 of an API key for `auth.api_keys[].hash`, so the key itself never
/// has to be written into the config.
struct HashKeyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hash-key", abstract: "Print the hash of a publisher API key for auth.api_keys[].hash (reads the key from stdin).")

    @Flag(help: "Generate a new random key, print it once on stderr and its hash on stdout.")
    var generate = false

    func run() throws {
        let key: String
        if generate {
            var bytes = [UInt8](repeating: 0, count: 32)
            for index in bytes.indices { bytes[index] = UInt8.random(in: 0...255) }
            key = bytes.map { String(format: "%02x", $0) }.joined()
            FileHandle.standardError.write(Data("key (give it to the publisher; it is not stored): \(key)\n".utf8))
        } else {
            guard let line = readLine(strippingNewline: true), !line.isEmpty else {
                throw ValidationError("give the key on stdin, e.g. printf %s \"$KEY\" | statushub hash-key")
            }
            key = line
        }
        print("sha256:" + APIKeyHash.hex(of: key))
    }
}
