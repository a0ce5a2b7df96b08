import SandgateSupport

/// One charge as settlement sees it: who holds the data, what it was used for, what it cost, and
/// where the record sits in its chain. Built from a usage record (`init(record:)`), so a
/// settlement is reproducible from the ledger alone, even after the policy changed.
public struct SettlementCharge: Sendable, Equatable {
    public var holder: String
    public var dataset: String
    public var purpose: String
    public var currency: String
    /// The holder's share when the query ran, parts per million.
    public var holderSharePPM: Int64
    public var costMicros: Int64
    public var nodeID: String
    public var seq: Int64
    public var recordHash: String

    public init(holder: String, dataset: String, purpose: String, currency: String, holderSharePPM: Int64, costMicros: Int64,
                nodeID: String = "", seq: Int64 = 0, recordHash: String = "") {
        self.holder = holder
        self.dataset = dataset
        self.purpose = purpose
        self.currency = currency
        self.holderSharePPM = holderSharePPM
        self.costMicros = costMicros
        self.nodeID = nodeID
        self.seq = seq
        self.recordHash = recordHash
    }
}

/// One line of a holder's statement: one dataset × purpose × currency × share.
public struct StatementLine: Sendable, Equatable {
    public let dataset: String
    public let purpose: String
    public let currency: String
    public let holderSharePPM: Int64
    /// Records summed (refusals included: they cost 0 but are part of what the line covers).
    public var records: Int64 = 0
    public var grossMicros: Int64 = 0
    public var platformFeeMicros: Int64 = 0
    public var holderRevenueMicros: Int64 = 0
}

/// What one holder is owed for a period.
public struct HolderStatement: Sendable, Equatable {
    public let holder: String
    public var lines: [StatementLine]
}

/// The part of one node's chain a settlement covers: every record that started in the period.
public struct LedgerCoverage: Sendable, Equatable {
    public let nodeID: String
    public var firstSeq: Int64
    public var lastSeq: Int64
    public var records: Int64
    /// `record_hash` of the last record covered: check it against a receipt in a dispute.
    public var tailHash: String

    public init(nodeID: String, firstSeq: Int64, lastSeq: Int64, records: Int64, tailHash: String) {
        self.nodeID = nodeID
        self.firstSeq = firstSeq
        self.lastSeq = lastSeq
        self.records = records
        self.tailHash = tailHash
    }
}

/// Holder statements for a period (DESIGN.md §11, issue 13).
///
/// **Rounding rule.** Each statement line sums its gross charges first (integer micro-units,
/// exactly the invoices' figures); then `holder_revenue = ⌊gross × holder_share_ppm / 1,000,000⌋`
/// and `platform_fee = gross − holder_revenue`. The remainder of the division (less than one
/// micro-unit per line) goes to the **platform**. So for every line, statement and period
/// `holder_revenue + platform_fee = gross`, and the grosses of all statements sum to the invoice
/// total of the same period and datasets exactly. Records with different shares (a policy change
/// inside the period) land on different lines, each with the share recorded at query time.
public struct Settlement: Sendable, Equatable {
    public var statements: [HolderStatement]
    public var coverage: [LedgerCoverage]

    /// Splits `gross` by `sharePPM` (clamped to 0…1,000,000): the holder's part rounded down,
    /// the rest (remainder included) the platform's. 128-bit intermediate: no overflow.
    public static func split(gross: Int64, sharePPM: Int64) -> (holder: Int64, platform: Int64) {
        let share = min(max(sharePPM, 0), 1_000_000)
        guard gross > 0 else { return (0, gross) }
        let product = gross.multipliedFullWidth(by: share)
        let (quotient, _) = Int64(1_000_000).dividingFullWidth(product)
        return (quotient, gross - quotient)
    }

    /// Statements for `charges` (one per holder, lines by dataset, purpose, currency and share,
    /// in name order), with the chain coverage of `covered` (every record of the period, by node).
    public static func settle(_ charges: [SettlementCharge], covered: [SettlementCharge]? = nil) -> Settlement {
        struct Key: Hashable { let holder, dataset, purpose, currency: String; let share: Int64 }
        var lines: [Key: StatementLine] = [:]
        for charge in charges {
            let key = Key(holder: charge.holder, dataset: charge.dataset, purpose: charge.purpose, currency: charge.currency, share: charge.holderSharePPM)
            var line = lines[key] ?? StatementLine(dataset: charge.dataset, purpose: charge.purpose, currency: charge.currency, holderSharePPM: charge.holderSharePPM)
            line.records += 1
            line.grossMicros = line.grossMicros.saturatingAdding(charge.costMicros)
            lines[key] = line
        }
        var byHolder: [String: [StatementLine]] = [:]
        for (key, var line) in lines {
            (line.holderRevenueMicros, line.platformFeeMicros) = split(gross: line.grossMicros, sharePPM: line.holderSharePPM)
            byHolder[key.holder, default: []].append(line)
        }
        let statements = byHolder.keys.sorted().map { holder in
            HolderStatement(holder: holder, lines: (byHolder[holder] ?? []).sorted {
                ($0.dataset, $0.purpose, $0.currency, $0.holderSharePPM) < ($1.dataset, $1.purpose, $1.currency, $1.holderSharePPM)
            })
        }
        var nodes: [String: LedgerCoverage] = [:]
        for charge in covered ?? charges {
            var range = nodes[charge.nodeID] ?? LedgerCoverage(nodeID: charge.nodeID, firstSeq: charge.seq, lastSeq: charge.seq, records: 0, tailHash: charge.recordHash)
            range.records += 1
            if charge.seq < range.firstSeq { range.firstSeq = charge.seq }
            if charge.seq >= range.lastSeq {
                range.lastSeq = charge.seq
                range.tailHash = charge.recordHash
            }
            nodes[charge.nodeID] = range
        }
        return Settlement(statements: statements, coverage: nodes.keys.sorted().compactMap { nodes[$0] })
    }

    /// Sum of every line's gross, by currency (to compare with the invoices of the period).
    public var grossByCurrency: [String: Int64] {
        var totals: [String: Int64] = [:]
        for statement in statements {
            for line in statement.lines { totals[line.currency, default: 0] &+= line.grossMicros }
        }
        return totals
    }

    public static let columns = ["holder", "dataset", "purpose", "currency", "holder_share_ppm", "records", "gross_micros",
                                 "platform_fee_micros", "holder_revenue_micros", "from", "to", "ledger_range", "tail_hash"]

    /// One CSV row per statement line; every row names the period and the chain range covered
    /// (`node:first-last` and `node:hash`, nodes joined by `;`).
    public func csv(from: String, to: String) -> String {
        let range = coverage.map { "\($0.nodeID):\($0.firstSeq)-\($0.lastSeq)" }.joined(separator: ";")
        let tails = coverage.map { "\($0.nodeID):\($0.tailHash)" }.joined(separator: ";")
        var text = Self.columns.joined(separator: ",") + "\r\n"
        for statement in statements {
            for line in statement.lines {
                text += CSV.line([statement.holder, line.dataset, line.purpose, line.currency, String(line.holderSharePPM), String(line.records),
                                  String(line.grossMicros), String(line.platformFeeMicros), String(line.holderRevenueMicros), from, to, range, tails],
                                 spreadsheetSafe: true)
            }
        }
        return text
    }

    /// `{"from","to","rounding","coverage":[…],"statements":[{"holder","lines":[…],"totals":[…]}]}`.
    public func json(from: String, to: String) -> String {
        JSONWriter.object { json in
            json.field("from", from)
            json.field("to", to)
            json.field("rounding", "per line: holder_revenue = floor(gross * holder_share_ppm / 1000000), platform_fee = gross - holder_revenue (remainder to the platform)")
            json.array("coverage") { json in
                for range in coverage {
                    json.object { json in
                        json.field("node_id", range.nodeID)
                        json.field("first_seq", range.firstSeq)
                        json.field("last_seq", range.lastSeq)
                        json.field("records", range.records)
                        json.field("tail_hash", range.tailHash)
                    }
                }
            }
            json.array("statements") { json in statements.forEach { Self.write($0, to: &json) } }
        } + "\n"
    }

    private static func write(_ statement: HolderStatement, to json: inout JSONWriter) {
        var totals: [String: (Int64, Int64, Int64)] = [:]
        for line in statement.lines {
            let old = totals[line.currency] ?? (0, 0, 0)
            totals[line.currency] = (old.0 &+ line.grossMicros, old.1 &+ line.platformFeeMicros, old.2 &+ line.holderRevenueMicros)
        }
        json.object { json in
            json.field("holder", statement.holder)
            json.array("lines") { json in
                for line in statement.lines {
                    json.object { json in
                        json.field("dataset", line.dataset)
                        json.field("purpose", line.purpose)
                        json.field("currency", line.currency)
                        json.field("holder_share_ppm", line.holderSharePPM)
                        json.field("records", line.records)
                        json.field("gross_micros", line.grossMicros)
                        json.field("platform_fee_micros", line.platformFeeMicros)
                        json.field("holder_revenue_micros", line.holderRevenueMicros)
                    }
                }
            }
            json.array("totals") { json in
                for currency in totals.keys.sorted() {
                    let total = totals[currency] ?? (0, 0, 0)
                    json.object { json in
                        json.field("currency", currency)
                        json.field("gross_micros", total.0)
                        json.field("platform_fee_micros", total.1)
                        json.field("holder_revenue_micros", total.2)
                    }
                }
            }
        }
    }
}

extension SettlementCharge {
    /// The charge a usage record carries: its holder and share as recorded at query time.
    public init(record: UsageRecord) {
        self.init(holder: record.holder, dataset: record.dataset, purpose: record.purpose, currency: record.currency,
                  holderSharePPM: record.holderSharePPM, costMicros: record.costMicros, nodeID: record.nodeID, seq: record.seq,
                  recordHash: record.recordHash)
    }
}

extension Settlement {
    /// Statements for the records of a period, selected exactly as `Invoice.lines` selects them
    /// (a dataset, and with `datasets` one of those), so both sum to the same total; the
    /// coverage spans every record of the period (refusals and records of other datasets too).
    public static func settle(records: [UsageRecord], datasets: Set<String>? = nil) -> Settlement {
        let charged = records.filter { !$0.dataset.isEmpty && datasets?.contains($0.dataset) != false }
        return settle(charged.map(SettlementCharge.init(record:)), covered: records.map(SettlementCharge.init(record:)))
    }
}
