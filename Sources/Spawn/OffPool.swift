import Foundation

/// Runs blocking work (file copies, system calls that may wait) on a dispatch thread, so that it
/// never holds one of the few threads of Swift's cooperative pool.
public enum OffPool {
    public static func run<T: Sendable, E: Error>(_ body: @escaping @Sendable () throws(E) -> T) async throws(E) -> T {
        let result: Result<T, E> = await withCheckedContinuation { cont in
            DispatchQueue.global().async {
                do throws(E) {
                    cont.resume(returning: .success(try body()))
                } catch {
                    cont.resume(returning: .failure(error))
                }
            }
        }
        return try result.get()
    }
}
