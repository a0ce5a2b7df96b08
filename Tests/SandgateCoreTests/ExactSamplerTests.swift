import Foundation
@testable import SandgateCore
import SandgatePolicy
import SandgateSQLite
import SandgateTestSupport
import Testing

/// The exact samplers (CKS20) against their analytical distributions, with fixed seeds.
@Suite struct ExactSamplerTests {
    static let draws = 100_000

    /// Pearson's chi-square of `counts` against `probability`, over the bins |z| ≤ `width` and
    /// two tail bins; returns the statistic and the degrees of freedom.
    static func chiSquare(_ counts: [Int64: Int], total: Int, width: Int64, probability: (Int64) -> Double) -> (statistic: Double, freedom: Int) {
        var statistic = 0.0
        var inside = 0.0
        var observedInside = 0
        for z in -width...width {
            let expected = probability(z) * Double(total)
            inside += probability(z)
            let observed = counts[z] ?? 0
            observedInside += observed
            statistic += pow(Double(observed) - expected, 2) / expected
        }
        let tailExpected = (1 - inside) * Double(total)
        let tailObserved = total - observedInside
        statistic += pow(Double(tailObserved) - tailExpected, 2) / tailExpected
        return (statistic, Int(2 * width + 1))
    }

    @Test("discrete Laplace: 100,000 seeded draws match the pmf (chi-square), mean, variance and tails", arguments: [
        (UInt64(3), UInt64(1)), (UInt64(7), UInt64(2)), (UInt64(20_000_001), UInt64(4_000_000)),
    ])
    func discreteLaplaceMatchesItsDistribution(numerator: UInt64, denominator: UInt64) throws {
        let scale = try #require(LaplaceScale(numerator: numerator, denominator: denominator))
        var generator = SeededGenerator(seed: 20_261_129)
        var counts: [Int64: Int] = [:]
        var sum = 0.0, squares = 0.0
        var beyondHalfWidth = 0
        let halfWidth = scale.halfWidth()
        for _ in 0..<Self.draws {
            let z = ExactSampler.discreteLaplace(scale: scale, using: &generator)
            counts[z, default: 0] += 1
            sum += Double(z)
            squares += Double(z) * Double(z)
            if z.magnitude > halfWidth { beyondHalfWidth += 1 }
        }
        let q = scale.ratio
        let variance = 2 * q / pow(1 - q, 2)
        let mean = sum / Double(Self.draws)
        // The mean's standard error is sqrt(variance / n): 5 of them.
        #expect(abs(mean) < 5 * sqrt(variance / Double(Self.draws)))
        #expect(abs(squares / Double(Self.draws) - variance) / variance < 0.05)
        // Bins wide enough that every expected count is large (≥ ~50).
        var width: Int64 = 0
        while scale.probability(of: width + 1) * Double(Self.draws) >= 50 { width += 1 }
        let (statistic, freedom) = Self.chiSquare(counts, total: Self.draws, width: width, probability: scale.probability)
        // The 0.1% critical value of chi-square is below freedom + 3.3·sqrt(2·freedom) + 10 for
        // these sizes (Wilson–Hilferty), so a correct sampler fails this 1 time in 1,000 seeds.
        #expect(statistic < Double(freedom) + 3.3 * sqrt(2 * Double(freedom)) + 10, "chi-square \(statistic) with \(freedom) degrees of freedom")
        // The 95% half-width: P(|Z| > k) ≤ 5%, and not far below it (k is the smallest such).
        let tail = Double(beyondHalfWidth) / Double(Self.draws)
        #expect(tail <= 0.05 + 0.004)
        let exactTail = 2 * pow(q, Double(halfWidth + 1)) / (1 + q)
        #expect(exactTail <= 0.05)
        #expect(abs(tail - exactTail) < 0.005)
    }

    @Test("Bernoulli(exp(−γ)) for rational γ below and above 1", arguments: [(UInt64(1), UInt64(3)), (UInt64(5), UInt64(2)), (UInt64(0), UInt64(1))])
    func bernoulliExp(numerator: UInt64, denominator: UInt64) {
        var generator = SeededGenerator(seed: 7)
        var hits = 0
        for _ in 0..<Self.draws where ExactSampler.bernoulliExp(minus: numerator, over: denominator, using: &generator) { hits += 1 }
        let p = exp(-Double(numerator) / Double(denominator))
        let error = sqrt(p * (1 - p) / Double(Self.draws))
        #expect(abs(Double(hits) / Double(Self.draws) - p) <= max(5 * error, 1e-9))
    }

    @Test("the output grid is exact: noisy counts are integers and sums are whole grid steps")
    func outputGridIsExact() throws {
        let bounds = MeasureBounds(lower: 0, upper: 50.25, decimals: 2)
        let privacy = PrivacyPolicy(epsilonPerQueryMicros: 1_000_000, delta: 1e-6, budgetMicros: 10_000_000, period: .month,
                                    maxGroupsPerUnit: 1, maxRowsPerUnit: 3, location: SourceLocation(file: "t", line: 1, column: 1))
        let measurements = [NoisyMeasurement(kind: .units, bounds: nil), NoisyMeasurement(kind: .rows, bounds: nil), NoisyMeasurement(kind: .sum("m"), bounds: bounds)]
        let calibrated = try #require(PrivatePlan.calibrate(measurements: measurements, privacy: privacy, minGroupSize: 2))
        let plan = PrivatePlan.testPlan(measurements: measurements, calibrated: calibrated,
                                        aggregates: [.count(1), .sum(2, real: true)])
        var generator = SeededGenerator(seed: 11)
        for _ in 0..<2_000 {
            guard let released = plan.release(raw: [.integer(100_000), .real(250), .real(1234.5678)], using: &generator) else { continue }
            guard case .integer = released.values[0], case .real(let sum) = released.values[1] else {
                Issue.record("unexpected storage classes \(released.values)")
                return
            }
            // The noisy sum is a whole number of 0.01 steps: its shortest decimal spelling (what
            // JSON lines and pgwire print) is the integer draw with the point moved, no residue.
            let steps = released.noisy[2]
            var expected = String(steps.magnitude / 100) + "." + String(format: "%02d", Int(steps.magnitude % 100))
            while expected.hasSuffix("0") { expected.removeLast() }
            if expected.hasSuffix(".") { expected += "0" }
            #expect("\(sum)" == (steps < 0 ? "-" : "") + expected)
        }
    }

    @Test("group selection: a key held by one unit is released with probability at most δ")
    func singleUnitKeyRarelyReleased() throws {
        // δ large enough to observe: 0.02 over 20,000 trials, with one and with four groups per unit.
        for groups in [1, 4] {
            let privacy = PrivacyPolicy(epsilonPerQueryMicros: 1_000_000, delta: 0.02, budgetMicros: 10_000_000, period: .month,
                                        maxGroupsPerUnit: groups, maxRowsPerUnit: 1, location: SourceLocation(file: "t", line: 1, column: 1))
            let measurements = [NoisyMeasurement(kind: .units, bounds: nil)]
            let calibrated = try #require(PrivatePlan.calibrate(measurements: measurements, privacy: privacy, minGroupSize: 2))
            let plan = PrivatePlan.testPlan(measurements: measurements, calibrated: calibrated, aggregates: [.count(0)])
            // Analytically: G keys of one unit pass together with probability ≤ G·q^(τ−1)/(1+q) ≤ δ.
            let q = calibrated.calibrations[0].scale.ratio
            #expect(Double(groups) * pow(q, Double(calibrated.threshold - 1)) / (1 + q) <= privacy.delta)
            var generator = SeededGenerator(seed: 99)
            var released = 0
            let trials = 20_000
            for _ in 0..<trials where plan.release(raw: [.integer(1)], using: &generator) != nil { released += 1 }
            let perKey = privacy.delta / Double(groups)
            #expect(Double(released) / Double(trials) <= perKey + 4 * sqrt(perKey / Double(trials)), "released \(released) of \(trials)")
            // And a large group passes: the threshold is not absurdly high.
            var large = 0
            for _ in 0..<1_000 where plan.release(raw: [.integer(calibrated.threshold + 40)], using: &generator) != nil { large += 1 }
            #expect(large > 950)
        }
    }
}

extension PrivatePlan {
    /// A plan with no SQL around it, to drive `release` directly.
    static func testPlan(measurements: [NoisyMeasurement], calibrated: (calibrations: [Calibration], threshold: Int64), aggregates: [NoisyAggregate]) -> PrivatePlan {
        PrivatePlan(stageOneSQL: "", stageTwo: AggregatePlanner.releasedGroups([], width: 1), keyCount: 0, measurements: measurements,
                    calibrations: calibrated.calibrations, aggregates: aggregates, threshold: calibrated.threshold, epsilonMicros: 1_000_000,
                    budgetMicros: 10_000_000, period: .month, aggregateNames: aggregates.map { _ in "x" }, outputAggregates: [],
                    measureColumns: [], maxGroupsPerUnit: 1, maxRowsPerUnit: 1, work: StageOneWork(stepsPerRow: 1, parameterCalls: 0))
    }
}
