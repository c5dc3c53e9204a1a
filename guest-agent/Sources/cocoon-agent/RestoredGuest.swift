import AgentAPI
import AgentService
import CAgentSys
import Glibc

/// Makes a VM restored from a template its own, before anything else of ConfigurePod: every clone
/// resumes with the template's random generator and clock. The host's entropy is added to the pool
/// and the generator reseeded from it (so two clones never draw the same bytes, and the kernel's
/// boot id, made at its first read, differs too); the clock is set to the host's.
enum RestoredGuest {
    static func apply(_ identity: Cocoon_Agent_V4_RestoredIdentity) throws(AgentFailure) {
        guard (32...512).contains(identity.entropy.count) else {
            throw .invalid("restored.entropy has \(identity.entropy.count) bytes, not 32...512")
        }
        let rc = Array(identity.entropy).withUnsafeBufferPointer {
            cocoon_reseed_random($0.baseAddress, Int32($0.count))
        }
        guard rc == 0 else { throw .internal("reseeding the guest's random generator: \(SystemError("ioctl", -rc))") }
        guard identity.realtimeNs > 0 else { throw .invalid("restored.realtime_ns must be positive") }
        var now = timespec(
            tv_sec: Int(identity.realtimeNs / 1_000_000_000), tv_nsec: Int(identity.realtimeNs % 1_000_000_000))
        guard clock_settime(CLOCK_REALTIME, &now) == 0 else {
            throw .internal("setting the guest's clock: \(SystemError("clock_settime"))")
        }
        log("restored from a template: random generator reseeded, clock set")
    }
}
