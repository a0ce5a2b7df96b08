import SandgatePolicy
import SandgateSQL

/// Parse → check → render without a sandbox: what `explain` shows and what the parser fuzzer
/// (`Scripts/fuzz.sh`) drives.
public enum QueryPlanning {
    /// The SQL sandgate would run for `sql` under `policy`, or the refusal.
    public static func render(_ sql: String, policy: DatasetPolicy, facts: SnapshotFacts) -> Result<String, GatewayError> {
        Gateway.check(sql, policy: policy, facts: facts).map { Renderer.render($0.select) }
    }
}
