import Foundation

/// Exact samplers of Canonne, Kamath and Steinke, "The Discrete Gaussian for Differential
/// Privacy" (2020), Algorithms 1 and 2: Bernoulli(exp(−γ)) for a rational γ and the discrete
/// Laplace distribution, using only integer arithmetic on uniform draws from `generator`.
///
/// Why not `Double` Laplace: the low bits of a floating-point noisy value depend on the true
/// value (Mironov 2012), so an attacker can read the answer out of them. Here every draw is an
/// integer and every probability a ratio of integers, so the output distribution is exactly
/// the one analysed. The gateway passes `SystemRandomNumberGenerator` (the kernel's CSPRNG);
/// tests pass a seeded generator.
public enum ExactSampler {
    /// A uniform integer in `0..<bound` (unbiased: the standard library rejects the excess).
    @inlinable
    public static func uniform<G: RandomNumberGenerator>(below bound: UInt64, using generator: inout G) -> UInt64 {
        UInt64.random(in: 0..<bound, using: &generator)
    }

    /// True with probability `numerator / denominator` (requires numerator ≤ denominator, denominator > 0).
    @inlinable
    public static func bernoulli<G: RandomNumberGenerator>(_ numerator: UInt64, over denominator: UInt64, using generator: inout G) -> Bool {
        uniform(below: denominator, using: &generator) < numerator
    }

    /// True with probability exp(−numerator/denominator) (CKS20 Algorithm 1).
    public static func bernoulliExp<G: RandomNumberGenerator>(minus numerator: UInt64, over denominator: UInt64, using generator: inout G) -> Bool {
        precondition(denominator > 0, "a rational with denominator 0")
        if numerator <= denominator {
            // K is the first k with A_k = 0, where A_k ~ Bernoulli(γ/k); P(K odd) = exp(−γ).
            // Bernoulli(γ/k) is drawn as Bernoulli(γ)·Bernoulli(1/k): exact, and no product of
            // denominators can overflow.
            var k: UInt64 = 1
            while bernoulli(numerator, over: denominator, using: &generator), bernoulli(1, over: k, using: &generator) {
                k += 1
            }
            return k % 2 == 1
        }
        // exp(−γ) = exp(−1)^⌊γ⌋ · exp(−(γ − ⌊γ⌋)).
        let whole = numerator / denominator
        for _ in 0..<whole where !bernoulliExp(minus: 1, over: 1, using: &generator) {
            return false
        }
        return bernoulliExp(minus: numerator % denominator, over: denominator, using: &generator)
    }

    /// One draw of the discrete Laplace distribution with scale `t / s` (CKS20 Algorithm 2):
    /// P(Z = z) = (1 − q)/(1 + q) · q^|z| with q = exp(−s/t).
    public static func discreteLaplace<G: RandomNumberGenerator>(scale parameter: LaplaceScale, using generator: inout G) -> Int64 {
        let t = parameter.numerator, s = parameter.denominator
        while true {
            let u = uniform(below: t, using: &generator)
            guard bernoulliExp(minus: u, over: t, using: &generator) else { continue }
            var v: UInt64 = 0
            while bernoulliExp(minus: 1, over: 1, using: &generator) { v += 1 }
            // X = U + t·V is geometric with ratio exp(−1/t); Y = ⌊X/s⌋ geometric with exp(−s/t).
            let x = UInt128(u) + UInt128(t) * UInt128(v)
            let y = x / UInt128(s)
            let negative = bernoulli(1, over: 2, using: &generator)
            if negative, y == 0 { continue }
            let magnitude = Int64(clamping: y)
            return negative ? -magnitude : magnitude
        }
    }
}

/// The scale t/s of a discrete Laplace distribution, as a reduced fraction of positive integers.
public struct LaplaceScale: Sendable, Hashable, CustomStringConvertible {
    public let numerator: UInt64
    public let denominator: UInt64

    /// `numerator / denominator`, reduced; nil when either is 0.
    public init?(numerator: UInt64, denominator: UInt64) {
        guard numerator > 0, denominator > 0 else { return nil }
        var a = numerator, b = denominator
        while b != 0 { (a, b) = (b, a % b) }
        self.numerator = numerator / a
        self.denominator = denominator / a
    }

    /// Scale for sensitivity `units` (grid steps) at `epsilonMicros` micro-ε: Δ/ε = Δ·10⁶/εµ.
    public init?(sensitivity units: UInt64, epsilonMicros: Int64) {
        guard epsilonMicros > 0 else { return nil }
        let product = units.multipliedReportingOverflow(by: UInt64(PrivacyMath.microsPerEpsilon))
        guard !product.overflow else { return nil }
        self.init(numerator: product.partialValue, denominator: UInt64(epsilonMicros))
    }

    /// The scale as a number (for calibration of public quantities only, never for sampling).
    public var value: Double { Double(numerator) / Double(denominator) }

    /// q = exp(−1/scale), the ratio of the distribution's geometric tails.
    public var ratio: Double { exp(-Double(denominator) / Double(numerator)) }

    /// P(Z = z), analytically.
    public func probability(of z: Int64) -> Double {
        let q = ratio
        return (1 - q) / (1 + q) * pow(q, Double(z.magnitude))
    }

    /// Smallest k with P(|Z| > k) ≤ 1 − confidence: the half-width of the central interval.
    /// P(|Z| > k) = 2q^(k+1)/(1+q).
    public func halfWidth(confidence: Double = 0.95) -> Int64 {
        let q = ratio
        guard q > 0, q < 1 else { return 0 }
        let needed = log((1 - confidence) * (1 + q) / 2) / log(q) - 1
        return max(0, Int64(needed.rounded(.up)))
    }

    public var description: String { "\(numerator)/\(denominator)" }
}

/// Constants shared by calibration code.
public enum PrivacyMath {
    public static let microsPerEpsilon: Int64 = 1_000_000
}
