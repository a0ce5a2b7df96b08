import Foundation
import Testing

/// `sandgate policy diff`: each edit of a table of edits is reported with its direction, and the
/// exit code is 3 exactly when exposure grows (the same edit undone exposes less: exit 0).
@Suite struct PolicyDiffCommandTests {
    struct Edit: Sendable, CustomTestStringConvertible {
        let label: String
        let file: String
        let old: String
        let new: String
        /// What the report says for the edit (OLD → NEW), and for the edit undone.
        let widened: String
        let narrowed: String
        /// The edit narrows: compare it undone first (like "grant added").
        var reversed = false
        var testDescription: String { label }
    }

    static let edits: [Edit] = [
        Edit(label: "mask removed", file: "retail.yaml", old: "phone:       { mask: phone_cn }", new: "phone:       {}",
             widened: "retail.customers.phone: mask phone_cn removed", narrowed: "retail.customers.phone: mask phone_cn added"),
        Edit(label: "pattern widened", file: "retail.yaml", old: "pattern: '^(.).*$'", new: "pattern: '^(..).*$'",
             widened: "retail.customers.name: mask regex edited: keeps more", narrowed: "retail.customers.name: mask regex edited: keeps less"),
        Edit(label: "hidden → visible", file: "retail.yaml", old: "      status:      {}\n", new: "      status:      {}\n      salary:      {}\n",
             widened: "retail.customers.salary: role not listed (hidden) → visible: values become visible as they are",
             narrowed: "retail.customers.salary: role visible → not listed (hidden)"),
        Edit(label: "threshold 10 → 3", file: "retail.yaml", old: "min_group_size: 10", new: "min_group_size: 3",
             widened: "retail.orders: min_group_size lowered from 10 to 3", narrowed: "retail.orders: min_group_size raised from 3 to 10"),
        Edit(label: "max_rows raised", file: "retail.yaml", old: "max_rows: 1000", new: "max_rows: 5000",
             widened: "retail: dataset max_rows raised from 1000 to 5000", narrowed: "retail: dataset max_rows lowered from 5000 to 1000"),
        // analyst-a's only grant: its grants become an empty mapping.
        Edit(label: "grant added", file: "consumers.yaml", old: "    grants:\n      retail: { max_rows: 200, daily_queries: 1000, daily_rows: 50000 }\n",
             new: "    grants: {}\n",
             widened: "consumer analyst-a: grant for dataset retail revoked", narrowed: "consumer analyst-a: grant added for dataset retail"),
        Edit(label: "tokens per consumer → shared", file: "retail.yaml", old: "owner: retail-data-office\n", new: "owner: retail-data-office\ntokens: per_consumer\n",
             widened: "retail: tokens shared by every consumer: their results can be linked, and leaks no longer trace to a consumer",
             narrowed: "retail: tokens keyed per consumer: results no longer link across consumers (every token changes)", reversed: true),
        Edit(label: "purposes no longer listed", file: "retail.yaml", old: "owner: retail-data-office\n",
             new: "owner: retail-data-office\npurposes: { credit_risk: Scoring the credit risk of applicants }\n",
             widened: "retail: purposes no longer listed: queries need no purpose, any use is allowed",
             narrowed: "retail: every query must now declare a purpose (credit_risk)", reversed: true),
        Edit(label: "purpose granted", file: "consumers.yaml", old: "daily_rows: 50000 }", new: "daily_rows: 50000, purposes: [credit_risk] }",
             widened: "consumer analyst-a: retail purpose credit_risk granted", narrowed: "consumer analyst-a: retail purpose credit_risk no longer granted"),
    ]

    @Test("each edit is reported with its direction; exit 3 when exposure grows, 0 when it shrinks", arguments: edits)
    func edit(_ edit: Edit) throws {
        let workspace = try CLIWorkspace()
        let fm = FileManager.default
        try fm.copyItem(atPath: workspace.root + "/Policies", toPath: workspace.root + "/Edited")
        try workspace.edit("Edited/" + edit.file, replacing: edit.old, with: edit.new)
        // "grant added" is written as its removal, so that the edited side is the narrower one.
        let addsGrant = edit.label == "grant added"
        let (older, newer) = addsGrant || edit.reversed ? ("Edited", "Policies") : ("Policies", "Edited")
        let forward = try workspace.run("policy", "diff", older, newer)
        #expect(forward.status == 3, "\(forward.stdout)\(forward.stderr)")
        let widened = addsGrant ? edit.narrowed : edit.widened
        #expect(forward.stdout.contains("+ exposes more: \(widened)"), "\(forward.stdout)")
        #expect(forward.stdout.split(separator: "\n").first?.hasPrefix("+ exposes more") == true)
        let backward = try workspace.run("policy", "diff", newer, older)
        #expect(backward.status == 0, "\(backward.stdout)\(backward.stderr)")
        let narrowed = addsGrant ? edit.widened : edit.narrowed
        #expect(backward.stdout.contains("- exposes less: \(narrowed)"), "\(backward.stdout)")
        #expect(!backward.stdout.contains("+ exposes more"))
    }

    @Test("the most dangerous change comes first, and single files compare too")
    func orderAndFiles() throws {
        let workspace = try CLIWorkspace()
        try FileManager.default.copyItem(atPath: workspace.root + "/Policies/retail.yaml", toPath: workspace.root + "/new-retail.yaml")
        try workspace.edit("new-retail.yaml", replacing: "max_rows: 1000", with: "max_rows: 5000")
        try workspace.edit("new-retail.yaml", replacing: "email:       { mask: email }", with: "email:       {}")
        let output = try workspace.run("policy", "diff", "Policies/retail.yaml", "new-retail.yaml")
        #expect(output.status == 3)
        let lines = output.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first?.contains("mask email removed") == true, "\(output.stdout)")
        #expect(lines.contains { $0.contains("max_rows raised from 1000 to 5000") })
    }

    @Test("an unchanged policy reports no change and exits 0; a new version that does not validate exits 1")
    func unchangedAndInvalid() throws {
        let workspace = try CLIWorkspace()
        let same = try workspace.run("policy", "diff", "Policies", "Policies")
        #expect(same.status == 0)
        #expect(same.stdout.contains("no change in exposure"))
        try FileManager.default.copyItem(atPath: workspace.root + "/Policies", toPath: workspace.root + "/Broken")
        try workspace.edit("Broken/retail.yaml", replacing: "min_group_size: 10", with: "min_group_size: ten")
        let broken = try workspace.run("policy", "diff", "Policies", "Broken")
        #expect(broken.status == 1)
        #expect(broken.stderr.contains("retail.yaml:") && broken.stderr.contains("NEW does not validate"))
    }

    @Test("--git REV compares the policies directory with its committed version")
    func gitRevision() throws {
        let workspace = try CLIWorkspace()
        for arguments in [["init", "-q"], ["add", "Policies"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "policies"]] {
            let git = Process()
            git.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            git.arguments = ["git"] + arguments
            git.currentDirectoryURL = URL(fileURLWithPath: workspace.root)
            try git.run()
            git.waitUntilExit()
            try #require(git.terminationStatus == 0)
        }
        #expect(try workspace.run("policy", "diff", "--git", "HEAD").status == 0)
        #expect(try workspace.run("policy", "diff", "--git", "--output=x").status == 2)
        try workspace.edit("Policies/retail.yaml", replacing: "min_group_size: 10", with: "min_group_size: 3")
        let output = try workspace.run("policy", "diff", "--git", "HEAD")
        #expect(output.status == 3)
        #expect(output.stdout.contains("min_group_size lowered from 10 to 3"))
        // The old version is written beside Policies only while the command runs.
        #expect(try FileManager.default.contentsOfDirectory(atPath: workspace.root).filter { $0.hasPrefix(".sandgate-diff") }.isEmpty)
    }
}
