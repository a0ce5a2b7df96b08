import Foundation
import SandgateLedger
import Synchronization
import Testing

/// issue 24 item 4: the checkpoint is written on a cadence, not after every batch, yet every
/// committed record is anchored when the writer goes idle, a caller syncs, or the store stops.
@Suite struct GroupCommitTests {
    /// A store that commits instantly and logs every anchor.
    final class FakeStore: Sendable {
        let committer = GroupCommit(name: "test-writer")
        private let sequence = Mutex<Int64>(0)
        let anchors = ThreadHandoff<[Int64]>([])

        init() {
            committer.configure(owner: self, commit: { [unowned self] batch in
                batch.map { entry in
                    var record = entry.record
                    record.seq = sequence.withLock { $0 += 1; return $0 }
                    return .success(record)
                }
            }, anchor: { [unowned self] last in anchors.update { $0.append(last.seq) } })
        }

        /// Appends one record and waits for its commit, as one connection querying in a loop does.
        func appendAndWait(_ index: Int) -> Int64 {
            let done = ThreadHandoff<Int64?>(nil)
            let queued = committer.enqueue(sampleRecord(index), hold: nil) { result in
                done.update { $0 = (try? result.get())?.seq ?? -1 }
            }
            precondition(queued)
            return done.wait(until: { $0 != nil }) { $0! }
        }
    }

    @Test("one writer committing record after record anchors on its cadence, not once per commit")
    func cadence() {
        let store = FakeStore()
        let started = DispatchTime.now().uptimeNanoseconds
        for index in 1...400 { _ = store.appendAndWait(index) }
        let elapsed = DispatchTime.now().uptimeNanoseconds - started
        let anchors = store.anchors.read { $0 }
        // The first commit anchors at once; after it, at most one anchor per elapsed interval
        // (a slow machine only loosens the bound).
        let bound = 1 + Int(elapsed / 100_000_000) + 1
        #expect(anchors.count <= bound, "\(anchors.count) anchors for 400 commits in \(elapsed / 1_000_000) ms")
        #expect(anchors == anchors.sorted(), "anchors never go back")
        store.committer.sync()
        #expect(store.anchors.read { $0.last } == 400, "sync waits for the tail's anchor")
    }

    @Test("an idle writer anchors its tail without being asked; stop anchors what is left")
    func idleAndStop() {
        let store = FakeStore()
        _ = store.appendAndWait(1)
        // Anchors are written after the batch's completions.
        store.anchors.wait(until: { !$0.isEmpty }, deadline: Date().addingTimeInterval(60)) { _ in }
        #expect(store.anchors.read { $0 } == [1], "the first commit anchors at once")
        // Within the cadence: the second record waits for the idle writer's anchor.
        _ = store.appendAndWait(2)
        store.anchors.wait(until: { $0.last == 2 }, deadline: Date().addingTimeInterval(60)) { _ in }
        #expect(store.anchors.read { $0.last } == 2, "the idle writer anchored its tail")
        _ = store.appendAndWait(3)
        store.committer.stop()
        #expect(store.anchors.read { $0.last } == 3, "stop anchors the tail")
        #expect(!store.committer.enqueue(sampleRecord(4), hold: nil) { _ in })
    }
}
