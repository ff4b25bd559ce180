import ArgumentParser
import Foundation

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A hub's base URL as a command's `--url` names it. URLSession takes any scheme it has a handler for, and with
/// `ftp://` it spun without an answer: only `http` and `https`, with a host, are a hub.
enum HubURL {
    static func parse(_ text: String, option: String = "--url") throws -> URL {
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), ["http", "https"].contains(scheme),
            let host = url.host, !host.isEmpty
        else {
            throw ValidationError("\(option) '\(text)' is not a hub's URL: http:// or https:// and a host, e.g. http://127.0.0.1:8080")
        }
        return url
    }

    /// The endpoint `path` of the hub at `base`.
    static func endpoint(_ base: String, _ path: String, option: String = "--url") throws -> URL {
        let url = try parse(base, option: option)
        guard let endpoint = URL(string: url.absoluteString.trimmingSuffix("/") + path) else {
            throw ValidationError("\(option) '\(base)' is not a hub's URL")
        }
        return endpoint
    }

    /// Why a request to the hub got no answer, in a line (not the error's dump).
    static func unreachable(_ base: String, _ error: any Error) -> String {
        if let failure = error as? URLError {
            return "cannot reach \(base): \(failure.localizedDescription) (URLError \(failure.code.rawValue))"
        }
        return "cannot reach \(base): \(error.localizedDescription)"
    }
}
