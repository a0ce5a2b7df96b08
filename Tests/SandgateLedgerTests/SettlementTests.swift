import Foundation
import SandgateLedger
import SandgateTestSupport
import Testing

/// Issue 13: holder statements reconcile to the invoices of the same period exactly.
@Suite struct SettlementTests {
    @Test("the split: holder + platform = gross, the holder's part is the floor of gross × share")
    func splitIsExact() {
        var random = SeededGenerator(seed: 13)
        var cases: [(Int64, Int64)] = [(0, 800_000), (1, 800_000), (4, 800_000), (5, 800_000), (1_160, 800_000), (999_999, 1),
                                       (.max, 999_999), (.max, 1_000_000), (.max, 0), (7, 0), (7, 1_000_000)]
        for _ in 0..<20_000 {
            let gross = random.next(upperBound: UInt64(2)) == 0 ? Int64(random.next(upperBound: UInt64(10_000))) : Int64(random.next(upperBound: UInt64(Int64.max)))
            cases.append((gross, Int64(random.next(upperBound: UInt64(1_000_001)))))
        }
        for (gross, share) in cases {
            let (holder, platform) = Settlement.split(gross: gross, sharePPM: share)
            #expect(holder + platform == gross)
            #expect(holder >= 0 && platform >= 0)
            // holder × 10⁶ ≤ gross × share < (holder + 1) × 10⁶, compared in 128 bits.
            let product = gross.multipliedFullWidth(by: share)
            let low = holder.multipliedFullWidth(by: 1_000_000)
            #expect((low.high, low.low) <= (product.high, product.low), "\(gross) × \(share)")
            if holder < .max {
                let high = (holder + 1).multipliedFullWidth(by: 1_000_000)
                #expect((product.high, product.low) < (high.high, high.low), "\(gross) × \(share)")
            }
        }
        #expect(Settlement.split(gross: 1_160, sharePPM: 800_000) == (928, 232))
        #expect(Settlement.split(gross: 5, sharePPM: 333_333) == (1, 4), "the remainder goes to the platform")
    }

    static func record(seq: Int64, startedAt: Int64, consumer: String, dataset: String, purpose: String, holder: String, share: Int64,
                       status: UsageStatus, cost: Int64, currency: String) -> UsageRecord {
        var record = UsageRecord(
            queryID: "q\(seq)", startedAt: startedAt, finishedAt: startedAt + 5, consumer: consumer, dataset: dataset, datasetVersion: "d",
            policyVersion: "p", status: status, errorCode: status == .ok ? "" : "timeout", rows: 1, cells: 1, bytes: 1, maskedCells: 0,
            suppressedGroups: 0, truncated: false, vmSteps: 1, elapsedMicroseconds: 5, costMicros: status == .refused ? 0 : cost,
            currency: currency, sqlSHA256: "", sql: "", rewrittenSQL: "")
        record.seq = seq
        record.nodeID = "node-a"
        record.recordHash = String(format: "%064x", seq)
        record.purpose = purpose
        record.holder = holder
        record.holderSharePPM = share
        return record
    }

    @Test("property: over many random charges, statements sum to the invoices exactly, per currency, dataset and purpose")
    func statementsReconcileToInvoices() {
        var random = SeededGenerator(seed: 2026)
        let consumers = ["analyst-a", "analyst-b", "kate"], datasets = ["retail", "health", "gone", ""], purposes = ["", "credit_risk", "research"]
        let holders = ["retail-data-office", "hospital", ""], currencies = ["CNY", "CNY", "EUR"]
        for round in 0..<50 {
            var records: [UsageRecord] = []
            for seq in 1...Int64(1 + random.next(upperBound: UInt64(400)) as UInt64) {
                let status: UsageStatus = [.ok, .ok, .ok, .failed, .refused][Int(random.next(upperBound: UInt64(5)))]
                let cost = random.next(upperBound: UInt64(10)) == 0 ? Int64(random.next(upperBound: UInt64(1 << 40))) : Int64(random.next(upperBound: UInt64(5_000)))
                records.append(Self.record(
                    seq: seq, startedAt: 1_795_000_000_000_000 + seq, consumer: consumers.randomElement(using: &random) ?? "",
                    dataset: datasets.randomElement(using: &random) ?? "", purpose: purposes.randomElement(using: &random) ?? "",
                    holder: holders.randomElement(using: &random) ?? "", share: [800_000, 700_000, 333_333, 1_000_000, 0].randomElement(using: &random) ?? 0,
                    status: status, cost: cost, currency: currencies.randomElement(using: &random) ?? "CNY"))
            }
            let published: Set<String> = ["retail", "health"]
            let invoice = Invoice.lines(from: records, datasets: published)
            let settlement = Settlement.settle(records: records, datasets: published)
            var invoiced: [String: Int64] = [:], settled: [String: Int64] = [:]
            for line in invoice { invoiced["\(line.currency)|\(line.dataset)|\(line.purpose)", default: 0] += line.costMicros }
            for statement in settlement.statements {
                for line in statement.lines {
                    settled["\(line.currency)|\(line.dataset)|\(line.purpose)", default: 0] += line.grossMicros
                    #expect(line.holderRevenueMicros + line.platformFeeMicros == line.grossMicros)
                    #expect(line.holderRevenueMicros == Settlement.split(gross: line.grossMicros, sharePPM: line.holderSharePPM).holder)
                }
            }
            #expect(invoiced == settled, "round \(round)")
            let totalInvoiced = invoice.reduce(into: [String: Int64]()) { $0[$1.currency, default: 0] += $1.costMicros }
            #expect(settlement.grossByCurrency == totalInvoiced, "round \(round)")
            // The coverage is every record of the period, whatever its dataset.
            #expect(settlement.coverage == [LedgerCoverage(nodeID: "node-a", firstSeq: 1, lastSeq: Int64(records.count), records: Int64(records.count),
                                                           tailHash: String(format: "%064x", records.count))])
        }
    }

    @Test("a share that changed inside the period: each record is split at the share it recorded")
    func shareChangeSplitsLines() throws {
        let records = [
            Self.record(seq: 1, startedAt: 1, consumer: "a", dataset: "retail", purpose: "p", holder: "h", share: 800_000, status: .ok, cost: 1_001, currency: "CNY"),
            Self.record(seq: 2, startedAt: 2, consumer: "a", dataset: "retail", purpose: "p", holder: "h", share: 800_000, status: .ok, cost: 1_001, currency: "CNY"),
            Self.record(seq: 3, startedAt: 3, consumer: "b", dataset: "retail", purpose: "p", holder: "h", share: 500_000, status: .ok, cost: 1_001, currency: "CNY"),
        ]
        let settlement = Settlement.settle(records: records)
        let statement = try #require(settlement.statements.first)
        #expect(settlement.statements.count == 1)
        #expect(statement.lines.map(\.holderSharePPM) == [500_000, 800_000])
        #expect(statement.lines.map(\.grossMicros) == [1_001, 2_002])
        #expect(statement.lines.map(\.holderRevenueMicros) == [500, 1_601])
        #expect(statement.lines.map(\.platformFeeMicros) == [501, 401])
        let csv = settlement.csv(from: "2026-11-01", to: "2026-11-30")
        #expect(csv.hasPrefix("holder,dataset,purpose,currency,holder_share_ppm,records,gross_micros,platform_fee_micros,holder_revenue_micros,from,to,ledger_range,tail_hash\r\n"))
        #expect(csv.contains("h,retail,p,CNY,800000,2,2002,401,1601,2026-11-01,2026-11-30,node-a:1-3,node-a:\(String(format: "%064x", 3))\r\n"))
        let json = try #require(try JSONSerialization.jsonObject(with: Data(settlement.json(from: "2026-11-01", to: "2026-11-30").utf8)) as? [String: Any])
        let statements = try #require(json["statements"] as? [[String: Any]])
        let totals = try #require(statements.first?["totals"] as? [[String: Any]])
        #expect(totals.first?["gross_micros"] as? Int == 3_003)
        #expect(totals.first?["holder_revenue_micros"] as? Int == 2_101)
    }
}
