import Logging
import ServiceLifecycle
import StatusHubCore
import StatusHubServer
import UnixSignals

/// SIGHUP, as nginx, HAProxy and Mosquitto take it: the node reads its TLS certificate and key and its configuration
/// again, and takes the new certificate (an ACME client's deploy hook, systemd's `ExecReload=`) and the new
/// credentials — API keys, the token secret and key, the scraper's key — without the restart that would close every
/// dashboard; other changed settings are named as waiting for the next start. What cannot be used is logged and the
/// node keeps what it has. Before, the signal's default action ended the node at once, without the drain SIGTERM
/// gets — and a SIGHUP is what logrotate's and many deploy hooks' scripts send by habit.
struct HangupReload: Service, CustomStringConvertible {
    /// Trapped before the node starts serving (`ServeCommand`), so no SIGHUP can find it untrapped.
    let hangups: UnixSignalsSequence
    let hub: StatusHub
    /// Where the configuration is read from, for the log.
    let source: String
    let reread: @Sendable () throws -> HubConfig
    let logger: Logger
    /// ServiceGroup logs its services at debug: by name, not as a dump of the config (Redis password, secrets).
    var description: String { "HangupReload" }

    func run() async throws {
        for await _ in hangups.cancelOnGracefulShutdown() {
            reloadCertificate()
            reloadConfiguration()
        }
    }

    private func reloadCertificate() {
        do {
            if let certificate = try hub.reloadCertificate() {
                logger.notice("SIGHUP: reloaded the TLS certificate and key; new connections get \(certificate)")
            }
        } catch {
            logger.error("SIGHUP: kept the TLS certificate in use: \(error)")
        }
    }

    private func reloadConfiguration() {
        do {
            let reread = try reread()
            let credentials = try hub.replaceCredentials(from: reread)
            let algorithms = credentials.tokenAlgorithms.isEmpty ? "none" : credentials.tokenAlgorithms.joined(separator: ", ")
            logger.notice("SIGHUP: reloaded the credentials from \(source): \(credentials.publisherKeys) API keys; subscriber tokens signed with \(algorithms)")
            let waiting = hub.settingsNeedingRestart(reread)
            if !waiting.isEmpty {
                logger.warning("SIGHUP: changed settings that take effect at the next start: \(waiting.joined(separator: ", "))")
            }
        } catch {
            logger.error("SIGHUP: kept the credentials in use: \(error)")
        }
    }
}
