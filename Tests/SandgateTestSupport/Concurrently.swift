import Foundation

/// Runs `body(0..<count)` on `count` threads of their own, released together, and waits for all:
/// a real race even on a 2-core machine (`concurrentPerform` would run about two at a time).
public func concurrently(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let gate = DispatchGroup()
    gate.enter()
    let done = DispatchGroup()
    for index in 0..<count {
        done.enter()
        let thread = Thread {
            gate.wait()
            body(index)
            done.leave()
        }
        thread.stackSize = 1 << 20
        thread.start()
    }
    gate.leave()
    done.wait()
}
