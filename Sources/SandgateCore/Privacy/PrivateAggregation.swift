import Foundation
import SandgatePolicy
import SandgateSQL
import SandgateSQLite

/// One noisy quantity stage 1 of a private plan measures per group, after contribution bounding.
struct NoisyMeasurement: Sendable, Hashable {
    enum Kind: Sendable, Hashable {
        /// Distinct privacy units of the group (group selection, and `count(DISTINCT unit)`).
        case units
        /// Rows of the group: `count(*)`.
        case rows
        /// Non-NULL values of a measure: `count(m)`, and the denominator of `avg(m)`.
        case values(String)
        /// The sum of a measure's values, clamped to its bounds: `sum(m)`, `total(m)`, and the
        /// numerator of `avg(m)`.
        case sum(String)
    }

    let kind: Kind
    /// The measure's bounds (sums only).
    let bounds: MeasureBounds?
}

/// The noise of one measurement, calibrated from the policy alone (never from data).
struct Calibration: Sendable, Hashable {
    /// L1 sensitivity in grid steps after contribution bounding: how much adding or removing one
    /// privacy unit can change this measurement, summed over all groups of one query.
    let sensitivity: UInt64
    /// 10^decimals: values are measured in steps of 1/grid.
    let grid: Int64
    let epsilonMicros: Int64
    let scale: LaplaceScale

    /// The 95% half-width in the measurement's own unit.
    var halfWidth: Double { Double(scale.halfWidth()) / Double(grid) }
}

/// How one aggregate of the consumer's query is computed from the noisy measurements.
enum NoisyAggregate: Sendable, Hashable {
    /// The measurement as an integer (counts).
    case count(Int)
    /// The measurement as a number on its grid (`sum`: an integer when the grid is 1).
    case sum(Int, real: Bool)
    /// Noisy sum over noisy count, clamped to the bounds.
    case average(sum: Int, count: Int, bounds: MeasureBounds)
}

/// The private part of an aggregate plan: what stage 1 returns per group and how to noise it.
///
/// Stage 1 (SQL rendered by `AggregatePlanner`) returns one row per group key that has any row:
/// the keys, then one raw value per measurement (`units` first). `release` turns those rows into
/// the released groups. See docs/CONTRACT.md §3, "Differential privacy", for the derivation.
struct PrivatePlan: Sendable {
    let stageOneSQL: String
    /// Stage 2 over `__sg_g` (the released groups), without its WITH: the sandbox supplies the
    /// noisy groups as a VALUES list.
    let stageTwo: Select
    let keyCount: Int
    let measurements: [NoisyMeasurement]
    let calibrations: [Calibration]
    /// For each of the plan's aggregates (`__sg_aN`), how it is computed.
    let aggregates: [NoisyAggregate]
    /// A group is released when its noisy unit count reaches this (max of the (ε, δ) threshold
    /// and `min_group_size`).
    let threshold: Int64
    /// ε the query spends.
    let epsilonMicros: Int64
    /// The table's budget and its period (a grant may lower the budget).
    let budgetMicros: Int64
    let period: BudgetPeriod
    /// The plan's aggregates as the consumer wrote them (`sum(amount)`), for `noise` and explain.
    let aggregateNames: [String]
    /// For each output column: the aggregate it shows as it is (for its `noise` half-width), or
    /// nil for keys and expressions.
    let outputAggregates: [Int?]
    /// The measures stage 1 returns after the keys and the unit, in order.
    let measureColumns: [String]
    let maxGroupsPerUnit: Int
    let maxRowsPerUnit: Int
    /// The most work stage 1 does per row, checked against `max_vm_steps` before it runs.
    let work: StageOneWork

    /// One group's exact measurements (in `measurements` order) from its bounded contributions.
    func measured(units: Int64, rows: Int64, counts: [Int64], sums: [Double]) -> [SQLValue] {
        measurements.map { measurement in
            switch measurement.kind {
            case .units: return .integer(units)
            case .rows: return .integer(rows)
            case .values(let name): return .integer(measureColumns.firstIndex(of: name).map { counts[$0] } ?? 0)
            case .sum(let name): return .real(measureColumns.firstIndex(of: name).map { sums[$0] } ?? 0)
            }
        }
    }

    /// Calibrates a plan: half of ε for group selection, the other half split evenly over the
    /// other measurements (all of it for selection when there are none).
    static func calibrate(measurements: [NoisyMeasurement], privacy: PrivacyPolicy, minGroupSize: Int) -> (calibrations: [Calibration], threshold: Int64)? {
        let others = measurements.count - 1
        let selection = others == 0 ? privacy.epsilonPerQueryMicros : privacy.epsilonPerQueryMicros / 2
        let share = others == 0 ? 0 : (privacy.epsilonPerQueryMicros - selection) / Int64(others)
        let groups = UInt64(privacy.maxGroupsPerUnit), rows = UInt64(privacy.maxRowsPerUnit)
        var calibrations: [Calibration] = []
        for measurement in measurements {
            var grid: Int64 = 1
            let sensitivity: UInt64
            switch measurement.kind {
            case .units: sensitivity = groups
            case .rows, .values: sensitivity = groups * rows
            case .sum:
                guard let bounds = measurement.bounds else { return nil }
                for _ in 0..<bounds.decimals { grid *= 10 }
                // Rounding each group's sum to the grid adds at most one step either way.
                let perRow = (bounds.magnitude * Double(grid)).rounded(.up)
                let total = Double(groups) * (Double(rows) * perRow + 1)
                guard total < PrivacyPolicy.maxSensitivityUnits * 4 else { return nil }
                sensitivity = UInt64(total)
            }
            let epsilon = measurement.kind == .units ? selection : share
            guard epsilon > 0, let scale = LaplaceScale(sensitivity: sensitivity, epsilonMicros: epsilon) else { return nil }
            calibrations.append(Calibration(sensitivity: sensitivity, grid: grid, epsilonMicros: epsilon, scale: scale))
        }
        guard let units = calibrations.first else { return nil }
        return (calibrations, max(Self.selectionThreshold(units.scale, maxGroups: privacy.maxGroupsPerUnit, delta: privacy.delta), Int64(minGroupSize)))
    }

    /// τ such that a key held by one unit (true count 1) passes with probability at most δ/G, so
    /// that the G keys one unit can hold together pass with probability at most δ:
    /// P(1 + Z ≥ τ) = q^(τ−1)/(1+q) ≤ q^(τ−1) = exp(−(τ−1)/b) ≤ δ/G  ⇐  τ ≥ 1 + b·ln(G/δ).
    static func selectionThreshold(_ scale: LaplaceScale, maxGroups: Int, delta: Double) -> Int64 {
        let b = scale.value
        return 1 + Int64((b * log(Double(maxGroups) / delta) + 1e-9).rounded(.up))
    }

    /// Noisy values of one group, or nil when group selection withholds it. `raw` holds one
    /// value per measurement (integers, or a real sum).
    func release<G: RandomNumberGenerator>(raw: [SQLValue], using generator: inout G) -> (values: [SQLValue], noisy: [Int64])? {
        guard raw.count == measurements.count, let units = calibrations.first else { return nil }
        let noisyUnits = Self.integer(raw[0]) &+ ExactSampler.discreteLaplace(scale: units.scale, using: &generator)
        guard noisyUnits >= threshold else { return nil }
        var noisy: [Int64] = [noisyUnits]
        for index in measurements.indices.dropFirst() {
            let calibration = calibrations[index]
            var exact = Self.integer(raw[index])
            if case .sum = measurements[index].kind { exact = Self.gridSteps(raw[index], grid: calibration.grid) }
            noisy.append(exact &+ ExactSampler.discreteLaplace(scale: calibration.scale, using: &generator))
        }
        let values = aggregates.map { aggregate -> SQLValue in
            switch aggregate {
            case .count(let index):
                return .integer(max(0, noisy[index]))
            case .sum(let index, let real):
                let grid = calibrations[index].grid
                return grid == 1 && !real ? .integer(noisy[index]) : .real(Double(noisy[index]) / Double(grid))
            case .average(let sum, let count, let bounds):
                let total = Double(noisy[sum]) / Double(calibrations[sum].grid)
                let mean = total / Double(max(1, noisy[count]))
                return .real(min(bounds.upper, max(bounds.lower, mean)))
            }
        }
        return (values, noisy)
    }

    /// The 95% half-width of each aggregate for a released row (`values` and `noisy` from `release`).
    func halfWidths(values: [SQLValue], noisy: [Int64]) -> [Double] {
        aggregates.enumerated().map { index, aggregate in
            switch aggregate {
            case .count(let measurement), .sum(let measurement, _):
                return calibrations[measurement].halfWidth
            case .average(let sum, let count, let bounds):
                // First-order propagation of both intervals through sum/count, at most the
                // bounds' range (the clamp): an approximation, computed from noisy values only.
                let mean: Double
                if case .real(let value) = values[index] { mean = value } else { mean = 0 }
                let noisyCount = Double(max(1, noisy[count]))
                let countWidth = calibrations[count].halfWidth, sumWidth = calibrations[sum].halfWidth
                return min(bounds.upper - bounds.lower, (sumWidth + abs(mean) * countWidth) / noisyCount)
            }
        }
    }

    /// The 95% half-width of each aggregate before anything runs; for `avg`, at a group of
    /// `threshold` units whose mean is the middle of the bounds (each unit's rows counted once).
    func expectedIntervals() -> [NoiseInterval] {
        let typical = aggregates.map { aggregate -> SQLValue in
            if case .average(_, _, let bounds) = aggregate { return .real((bounds.lower + bounds.upper) / 2) }
            return .integer(0)
        }
        let noisy = measurements.map { _ in threshold }
        return zip(aggregateNames, halfWidths(values: typical, noisy: noisy)).map { NoiseInterval(column: $0, halfWidth: $1) }
    }

    /// The `noise` of a response: the half-width of each output column that shows an aggregate.
    func noise(columns: [String], released: ReleasedGroups) -> [NoiseInterval] {
        zip(columns, outputAggregates).compactMap { column, aggregate in
            guard let aggregate, aggregate < released.halfWidths.count else { return nil }
            return NoiseInterval(column: column, halfWidth: released.halfWidths[aggregate])
        }
    }

    static func integer(_ value: SQLValue) -> Int64 {
        switch value {
        case .integer(let number): return number
        case .real(let number): return Int64(clamping: number)
        default: return 0
        }
    }

    /// A clamped sum in grid steps (rounded to nearest).
    static func gridSteps(_ value: SQLValue, grid: Int64) -> Int64 {
        switch value {
        case .integer(let number): return number.multipliedReportingOverflow(by: grid).overflow ? (number < 0 ? .min / 2 : .max / 2) : number * grid
        case .real(let number):
            let scaled = (number * Double(grid)).rounded()
            return scaled.isFinite ? Int64(clamping: scaled) : 0
        default: return 0
        }
    }
}

extension Int64 {
    /// Rounds toward zero, saturating at the ends of the range (NaN → 0).
    init(clamping value: Double) {
        if value.isNaN { self = 0 } else if value >= 9.2e18 { self = .max / 2 } else if value <= -9.2e18 { self = .min / 2 } else { self = Int64(value) }
    }
}
