import SandgateSQL

/// The most work stage 1 of a private plan can do, fixed before it reads a row (issue 21 item 1,
/// after *Differential Privacy Under Fire*, Haeberlen, Pierce and Narayan 2011): a query whose
/// running time one person's rows could push past the timeout would answer `timeout` or not
/// depending on that person, with certainty. So the gateway bounds every row's work from the
/// query alone (each expression node, function call and pattern match at a fixed worst case, a
/// pattern match cut off at `patternStepCap` matcher steps, answering NULL), multiplies by the
/// table's size class, and refuses the query before it runs when that exceeds `max_vm_steps`.
/// What is admitted reads at most the bound whatever the data; what remains observable is the
/// elapsed time within it (CONTRACT §9).
struct StageOneWork: Sendable, Equatable {
    /// Worst-case VM steps per row read (SQLite's own opcodes, with a function call or a pattern
    /// match counted as the opcodes its worst case costs).
    let stepsPerRow: Int64
    /// Function calls with a parameter argument: their work grows with the parameter's length.
    let parameterCalls: Int64

    /// A row's loop, cursor movement and column reads; calibrated against SQLite's
    /// `SQLITE_STMTSTATUS_VM_STEP` of stage-1 statements (`StageOneWorkTests`), with margin.
    static let rowSteps: Int64 = 24
    static let nodeSteps: Int64 = 3
    static let callSteps: Int64 = 16
    /// A LIKE or GLOB call in stage 1 gives up after this many matcher steps and answers NULL (the
    /// same NULL for the same values: still deterministic), so that no value, long or crafted,
    /// makes one row cost more than its bound.
    static let patternStepCap = 2_048
    /// A matcher step costs about a tenth of an opcode; counted as half of one.
    static let patternSteps = Int64(patternStepCap / 2)
    /// Bytes of a parameter that cost one step in a linear function (lower, instr, trim, …).
    static let parameterBytesPerStep: Int64 = 16

    init(stepsPerRow: Int64, parameterCalls: Int64) {
        self.stepsPerRow = stepsPerRow
        self.parameterCalls = parameterCalls
    }

    /// The bound of every expression `select` evaluates per row (result columns, WHERE, joins'
    /// ON clauses), each node counted once per row.
    init(select: Select) {
        var steps = Self.rowSteps, parameterCalls: Int64 = 0
        _ = select.transformingExpressions { node in
            switch node {
            case .pattern:
                steps &+= Self.patternSteps
            case .function(let call):
                steps &+= Self.callSteps
                if call.arguments.contains(where: { if case .parameter = $0 { true } else { false } }) { parameterCalls &+= 1 }
            default:
                steps &+= Self.nodeSteps
            }
            return nil
        }
        self.init(stepsPerRow: steps, parameterCalls: parameterCalls)
    }

    /// The most steps stage 1 may take on tables holding `rows` rows together, with parameters of
    /// at most `parameterBytes` bytes: `sizeClass(rows)` × the per-row bound.
    func bound(rows: Int64, parameterBytes: Int) -> Int64 {
        let perRow = stepsPerRow.addingReportingOverflow(parameterCalls.multipliedReportingOverflow(by: Int64(parameterBytes) / Self.parameterBytesPerStep).partialValue)
        let total = Self.sizeClass(rows).multipliedReportingOverflow(by: perRow.partialValue)
        return total.overflow || perRow.overflow ? .max : total.partialValue
    }

    /// The power of two at or above `rows` (at least 1,024): what a private table discloses of its
    /// size through the work bound, its refusals and its meters — never the exact count.
    static func sizeClass(_ rows: Int64) -> Int64 {
        var size: Int64 = 1_024
        while size < rows, size < Int64.max / 2 { size *= 2 }
        return size
    }
}
