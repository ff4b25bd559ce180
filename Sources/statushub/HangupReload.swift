import Logging
import ServiceLifecycle
import StatusHubServer
import UnixSignals

/// SIGHUP, as nginx, HAProxy and Mosquitto take it: load the TLS certificate and key again, so a renewed certificate
/// (an ACME client's deploy hook, systemd's `ExecReload=`) is served without the restart that would close every
/// dashboard. Before, the signal's default action ended the node at once, without the drain SIGTERM gets — and a
/// SIGHUP is what logrotate's and many deploy hooks' scripts send by habit.
struct HangupReload: Service {
    /// Trapped before the node starts serving (`ServeCommand`), so no SIGHUP can find it untrapped.
    let hangups: UnixSignalsSequence
    let hub: StatusHub
    let logger: Logger

    func run() async throws {
        for await _ in hangups.cancelOnGracefulShutdown() {
            do {
                if let certificate = try hub.reloadCertificate() {
                    logger.notice("SIGHUP: reloaded the TLS certificate and key; new connections get \(certificate)")
                } else {
                    logger.notice("SIGHUP: nothing to reload (the node serves plain HTTP; its configuration is read at start)")
                }
            } catch {
                logger.error("SIGHUP: kept the TLS certificate in use: \(error)")
            }
        }
    }
}
