// libFuzzer target (issue 7 item 9): parse → check → render → parse on the demo policy.
// Built and run by Scripts/fuzz.sh; not part of the normal build (Package.swift adds the target
// only when SANDGATE_FUZZ is set). SwiftPM gives an executable its own `main`, so this one hands
// control to libFuzzer through `LLVMFuzzerRunDriver`.
//
// What counts as a crash: any trap (a force unwrap, an overflow, an index out of range), a
// rendering that does not parse again, a rendering that is not a fixed point, and a checked query
// whose rendering the checker would refuse.

import Foundation
import SandgateCore
import SandgatePolicy
import SandgateSQL
import SandgateServer

/// The demo policy, loaded once from `SANDGATE_FUZZ_POLICY` (default `Policies/retail.yaml`).
let fuzzPolicy: DatasetPolicy = {
    let path = ProcessInfo.processInfo.environment["SANDGATE_FUZZ_POLICY"] ?? "Policies/retail.yaml"
    switch PolicyLoader.loadDataset(path: path) {
    case .success(let policy): return policy
    case .failure(let errors): fatalError("cannot load \(path): \(errors)")
    }
}()

/// The demo fixture's keys: customers are unique on customer_id, orders on order_id.
let fuzzFacts = SnapshotFacts(
    rowCounts: ["customers": 5000, "orders": 20000],
    uniqueKeys: ["customers": [["customer_id"]], "orders": [["order_id"]]],
    overflowingSums: ["orders.amount"])

/// Which front end to fuzz: `sql` (the default: parser, checker, renderer), `pgwire` (the
/// PostgreSQL message decoder and SQL translation) or `jsonlines` (line framer and request parser).
let fuzzTarget = ProcessInfo.processInfo.environment["SANDGATE_FUZZ_TARGET"] ?? "sql"

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: data == nil ? 0 : size))
    switch fuzzTarget {
    case "pgwire":
        WireFuzzing.postgres(bytes)
        return 0
    case "jsonlines":
        WireFuzzing.jsonLines(bytes)
        return 0
    default:
        break
    }
    let text = String(decoding: bytes, as: UTF8.self)
    // 1. The parser's own fixed point, on everything it accepts.
    if let select = try? Parser.parseSelect(text) {
        let rendered = Renderer.render(select)
        guard let again = try? Parser.parseSelect(rendered, maximumDepth: 10_000) else {
            fatalError("rendering does not parse: \(text.debugDescription) → \(rendered.debugDescription)")
        }
        guard Renderer.render(again) == rendered else {
            fatalError("rendering is not a fixed point: \(text.debugDescription) → \(rendered.debugDescription)")
        }
    }
    // 2. Check and render against the demo policy; a checked rendering must parse again.
    if case .success(let checked) = QueryPlanning.render(text, policy: fuzzPolicy, facts: fuzzFacts) {
        guard (try? Parser.parseSelect(checked, maximumDepth: 10_000)) != nil else {
            fatalError("checked rendering does not parse: \(text.debugDescription) → \(checked.debugDescription)")
        }
    }
    return 0
}

@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

var argc = CommandLine.argc
var argv = CommandLine.unsafeArgv
_ = fuzzPolicy  // load (and fail) before fuzzing, not inside the first input
exit(runFuzzerDriver(&argc, &argv) { data, size in fuzzOneInput(data, size) })
