import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Starts `process` with no signals blocked: a child inherits its parent thread's signal mask, and the
/// concurrency pool's threads block most signals, so a child spawned from a test would otherwise ignore SIGTERM.
func launchWithSignalsUnblocked(_ process: Process) throws {
    var unblocked = sigset_t()
    sigemptyset(&unblocked)
    var previous = sigset_t()
    pthread_sigmask(SIG_SETMASK, &unblocked, &previous)
    defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
    try process.run()
}
