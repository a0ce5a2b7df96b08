import Foundation
import Testing

/// `sandgate policy test`: the shipped cases pass on the shipped policy, and a policy edited to
/// protect less fails with the case named, its query, what was expected and what happened.
@Suite struct PolicyTestCommandTests {
    @Test("the shipped cases pass on the shipped policy")
    func shippedCasesPass() throws {
        let workspace = try CLIWorkspace(rows: 5000)
        let output = try workspace.run("policy", "test")
        #expect(output.status == 0, "\(output.stdout)\(output.stderr)")
        #expect(output.stdout.contains(", 0 failed"))
        #expect(!output.stdout.contains("FAIL"))
    }

    @Test("a weakened policy fails with the case named and what happened", arguments: [
        ("phone:       { mask: phone_cn }", "phone:       {}", "personal columns of customers come back masked", "column 'phone' is not masked"),
        ("min_group_size: 10", "min_group_size: 3", "fine groups (a city in a month", "distinct individuals, fewer than 10"),
        ("row_filter: \"status = 'active'\"", "row_filter: \"status <> 'x'\"", "only active customers exist", "the value of 'status' does not match"),
    ])
    func weakenedPolicyFails(old: String, new: String, caseName: String, problem: String) throws {
        let workspace = try CLIWorkspace(rows: 5000)
        try workspace.edit("Policies/retail.yaml", replacing: old, with: new)
        let output = try workspace.run("policy", "test")
        #expect(output.status == 1)
        #expect(output.stdout.contains("FAIL retail: \(caseName)"), "\(output.stdout)")
        #expect(output.stdout.contains(problem), "\(output.stdout)")
        for label in ["query:", "consumer:", "expected:", "actual:"] { #expect(output.stdout.contains(label)) }
        #expect(output.stderr.contains("case(s) failed"))
    }

    @Test("a hidden column published by mistake fails the case that pins it")
    func publishedSalaryFails() throws {
        let workspace = try CLIWorkspace(rows: 5000)
        try workspace.edit("Policies/retail.yaml", replacing: "      status:      {}\n", with: "      status:      {}\n      salary:      {}\n")
        let output = try workspace.run("policy", "test")
        #expect(output.status == 1)
        #expect(output.stdout.contains("FAIL retail: salary is not published"))
        #expect(output.stdout.contains("expected: refuse: no_such_column"))
        #expect(output.stdout.contains("actual:   allowed:"))
    }

    @Test("a policy that does not load fails every case, after saying why")
    func invalidPolicy() throws {
        let workspace = try CLIWorkspace()
        try workspace.edit("Policies/retail.yaml", replacing: "min_group_size: 10", with: "min_group_size: ten")
        let output = try workspace.run("policy", "test")
        #expect(output.status == 1)
        #expect(output.stdout.contains("retail.yaml:33:21: min_group_size must be an integer"), "\(output.stdout)")
        #expect(output.stdout.contains("problem:  dataset 'retail' is not available"))
        #expect(!output.stdout.contains("ok   retail"))
    }

    @Test("a test file with a mistake is reported at its line and column")
    func badTestFile() throws {
        let workspace = try CLIWorkspace()
        try workspace.edit("Policies/tests/retail.yaml", replacing: "    refuse: no_such_column", with: "    refuse: no_such_column\n    alow: {}")
        let output = try workspace.run("policy", "test")
        #expect(output.status == 1)
        #expect(output.stdout.contains("Policies/tests/retail.yaml:"))
        #expect(output.stdout.contains("unknown key 'alow'"))
    }

    @Test("no test files is a failure that says where they go")
    func noTests() throws {
        let workspace = try CLIWorkspace()
        try FileManager.default.removeItem(atPath: workspace.root + "/Policies/tests")
        let output = try workspace.run("policy", "test")
        #expect(output.status == 1)
        #expect(output.stderr.contains("no test files in Policies/tests"))
    }
}
