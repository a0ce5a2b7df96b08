import Foundation
import SandgateCore
import SandgateSQLite

/// The PostgreSQL catalog as one consumer sees one dataset: `pg_catalog` and
/// `information_schema` tables in a private in-memory SQLite database, filled from the
/// consumer's view (published tables, visible columns, their types) and nothing else. Client
/// libraries' introspection queries (psql's `\dt`/`\d`, pgjdbc's `getTables`, SQLAlchemy's
/// checks) run here after `PGDialect` has translated them; since the database holds no data,
/// whatever such a query does, it can only read the consumer's own view of the schema.
final class PGCatalog {
    struct Answer {
        var columns: [PGColumn]
        var rows: [[SQLValue]]
    }

    private let connection: Connection
    let dataset: String
    let consumer: String
    private var regexCache: [String: NSRegularExpression] = [:]
    private var deadline: UInt64 = .max

    static let publicNamespace: Int64 = 2200, catalogNamespace: Int64 = 11, informationNamespace: Int64 = 13_000
    static let ownerOID: Int64 = 10, databaseOID: Int64 = 16_383, firstTableOID: Int64 = 16_384

    /// Whether `sql` is a catalog or session-information query (it names a catalog schema or
    /// table, or one of the functions clients call on connect) rather than a query of the data.
    static func isCatalogQuery(_ tokens: [PGDialect.Token]) -> Bool {
        var index = 0
        for token in tokens {
            defer { index += 1 }
            guard token.kind == .word || token.kind == .quotedIdentifier else { continue }
            let word = token.text.lowercased().trimmingCharacters(in: "\"")
            if word == "pg_catalog" || word == "information_schema" || catalogTables.contains(word) { return true }
            if ["version", "current_schema", "current_schemas", "current_database", "pg_backend_pid", "current_setting",
                "pg_is_in_recovery", "has_table_privilege", "pg_encoding_to_char", "format_type", "set_config", "to_regtype", "to_regclass"].contains(word),
               tokens.dropFirst(index + 1).first(where: { !$0.isSpace })?.text == "(" { return true }
            if ["current_user", "session_user", "current_catalog"].contains(word) { return true }
        }
        return false
    }

    static let catalogTables: Set<String> = [
        "pg_namespace", "pg_class", "pg_attribute", "pg_type", "pg_database", "pg_roles", "pg_user", "pg_description",
        "pg_index", "pg_constraint", "pg_attrdef", "pg_inherits", "pg_am", "pg_tablespace", "pg_settings", "pg_proc",
        "pg_policy", "pg_statistic_ext", "pg_publication", "pg_publication_namespace", "pg_publication_rel", "pg_trigger", "pg_rewrite",
        "pg_foreign_table", "pg_partitioned_table", "pg_extension", "pg_enum", "pg_range", "pg_sequence", "pg_depend",
        "pg_collation", "pg_tables", "pg_views", "pg_matviews", "pg_indexes", "pg_authid", "pg_shdescription",
        "pg_foreign_server", "pg_foreign_data_wrapper", "pg_event_trigger", "pg_opclass", "pg_operator", "pg_cast", "pg_language",
    ]

    /// Builds the catalog of `description` (the consumer's view) with `types` (declared types of
    /// visible columns by lower-cased table and column).
    init(description: DatasetDescription, declaredTypes: [String: [String: String]], consumer: String) throws(SQLiteError) {
        dataset = description.dataset
        self.consumer = consumer
        connection = try Connection()
        let db = connection
        _ = db.set(.enableLoadExtension, false)
        try db.execute("""
            ATTACH DATABASE ':memory:' AS pg_catalog; ATTACH DATABASE ':memory:' AS information_schema;
            CREATE TABLE pg_catalog.pg_namespace (oid OID, nspname NAME, nspowner OID, nspacl TEXT);
            CREATE TABLE pg_catalog.pg_class (oid OID, relname NAME, relnamespace OID, reltype OID, reloftype OID, relowner OID,
              relam OID, relfilenode OID, reltablespace OID, relpages INT4, reltuples FLOAT4, relallvisible INT4, reltoastrelid OID,
              relhasindex BOOLEAN, relisshared BOOLEAN, relpersistence CHAR, relkind CHAR, relnatts INT2, relchecks INT2,
              relhasrules BOOLEAN, relhastriggers BOOLEAN, relhassubclass BOOLEAN, relrowsecurity BOOLEAN, relforcerowsecurity BOOLEAN,
              relispopulated BOOLEAN, relreplident CHAR, relispartition BOOLEAN, relrewrite OID, relfrozenxid INT4, relminmxid INT4,
              relacl TEXT, reloptions TEXT, relpartbound TEXT, relhasoids BOOLEAN);
            CREATE TABLE pg_catalog.pg_attribute (attrelid OID, attname NAME, atttypid OID, attstattarget INT4, attlen INT2, attnum INT2,
              attndims INT4, attcacheoff INT4, atttypmod INT4, attbyval BOOLEAN, attalign CHAR, attstorage CHAR, attcompression CHAR,
              attnotnull BOOLEAN, atthasdef BOOLEAN, atthasmissing BOOLEAN, attidentity CHAR, attgenerated CHAR, attisdropped BOOLEAN,
              attislocal BOOLEAN, attinhcount INT4, attcollation OID, attacl TEXT, attoptions TEXT, attfdwoptions TEXT, attmissingval TEXT);
            CREATE TABLE pg_catalog.pg_type (oid OID, typname NAME, typnamespace OID, typowner OID, typlen INT2, typbyval BOOLEAN,
              typtype CHAR, typcategory CHAR, typispreferred BOOLEAN, typisdefined BOOLEAN, typdelim CHAR, typrelid OID, typelem OID,
              typarray OID, typinput TEXT, typoutput TEXT, typreceive TEXT, typsend TEXT, typbasetype OID, typtypmod INT4, typndims INT4,
              typcollation OID, typnotnull BOOLEAN, typdefault TEXT, typdefaultbin TEXT, typalign CHAR, typstorage CHAR, typacl TEXT,
              typsubscript TEXT, typmodin TEXT, typmodout TEXT, typanalyze TEXT);
            CREATE TABLE pg_catalog.pg_database (oid OID, datname NAME, datdba OID, encoding INT4, datlocprovider CHAR,
              datistemplate BOOLEAN, datallowconn BOOLEAN, datconnlimit INT4, datcollate TEXT, datctype TEXT, daticulocale TEXT,
              datcollversion TEXT, datacl TEXT, dattablespace OID);
            CREATE TABLE pg_catalog.pg_roles (oid OID, rolname NAME, rolsuper BOOLEAN, rolinherit BOOLEAN, rolcreaterole BOOLEAN,
              rolcreatedb BOOLEAN, rolcanlogin BOOLEAN, rolreplication BOOLEAN, rolconnlimit INT4, rolvaliduntil TEXT, rolbypassrls BOOLEAN,
              rolconfig TEXT);
            CREATE TABLE pg_catalog.pg_description (objoid OID, classoid OID, objsubid INT4, description TEXT);
            CREATE TABLE pg_catalog.pg_shdescription (objoid OID, classoid OID, description TEXT);
            CREATE TABLE pg_catalog.pg_index (indexrelid OID, indrelid OID, indnatts INT2, indnkeyatts INT2, indisunique BOOLEAN,
              indisprimary BOOLEAN, indisexclusion BOOLEAN, indimmediate BOOLEAN, indisclustered BOOLEAN, indisvalid BOOLEAN,
              indcheckxmin BOOLEAN, indisready BOOLEAN, indislive BOOLEAN, indisreplident BOOLEAN, indkey TEXT, indcollation TEXT,
              indclass TEXT, indoption TEXT, indexprs TEXT, indpred TEXT, indnullsnotdistinct BOOLEAN);
            CREATE TABLE pg_catalog.pg_constraint (oid OID, conname NAME, connamespace OID, contype CHAR, condeferrable BOOLEAN,
              condeferred BOOLEAN, convalidated BOOLEAN, conrelid OID, contypid OID, conindid OID, conparentid OID, confrelid OID,
              confupdtype CHAR, confdeltype CHAR, confmatchtype CHAR, conislocal BOOLEAN, coninhcount INT4, connoinherit BOOLEAN,
              conkey TEXT, confkey TEXT, conbin TEXT);
            CREATE TABLE pg_catalog.pg_attrdef (oid OID, adrelid OID, adnum INT2, adbin TEXT);
            CREATE TABLE pg_catalog.pg_inherits (inhrelid OID, inhparent OID, inhseqno INT4, inhdetachpending BOOLEAN);
            CREATE TABLE pg_catalog.pg_am (oid OID, amname NAME, amhandler TEXT, amtype CHAR);
            CREATE TABLE pg_catalog.pg_tablespace (oid OID, spcname NAME, spcowner OID, spcacl TEXT, spcoptions TEXT);
            CREATE TABLE pg_catalog.pg_settings (name TEXT, setting TEXT, unit TEXT, category TEXT, short_desc TEXT, context TEXT,
              vartype TEXT, source TEXT, boot_val TEXT, reset_val TEXT);
            CREATE TABLE pg_catalog.pg_proc (oid OID, proname NAME, pronamespace OID, proowner OID, prokind CHAR, prorettype OID,
              proargtypes TEXT, proretset BOOLEAN, prosrc TEXT, prolang OID);
            CREATE TABLE pg_catalog.pg_policy (oid OID, polname NAME, polrelid OID, polcmd CHAR, polpermissive BOOLEAN, polroles TEXT,
              polqual TEXT, polwithcheck TEXT);
            CREATE TABLE pg_catalog.pg_statistic_ext (oid OID, stxrelid OID, stxname NAME, stxnamespace OID, stxowner OID,
              stxstattarget INT4, stxkeys TEXT, stxkind TEXT, stxexprs TEXT);
            CREATE TABLE pg_catalog.pg_publication (oid OID, pubname NAME, pubowner OID, puballtables BOOLEAN, pubinsert BOOLEAN,
              pubupdate BOOLEAN, pubdelete BOOLEAN, pubtruncate BOOLEAN, pubviaroot BOOLEAN);
            CREATE TABLE pg_catalog.pg_publication_namespace (oid OID, pnpubid OID, pnnspid OID);
            CREATE TABLE pg_catalog.pg_publication_rel (oid OID, prpubid OID, prrelid OID, prqual TEXT, prattrs TEXT);
            CREATE TABLE pg_catalog.pg_trigger (oid OID, tgrelid OID, tgparentid OID, tgname NAME, tgfoid OID, tgtype INT2,
              tgenabled CHAR, tgisinternal BOOLEAN, tgconstrrelid OID, tgconstrindid OID, tgconstraint OID, tgdeferrable BOOLEAN,
              tginitdeferred BOOLEAN, tgnargs INT2, tgattr TEXT, tgargs TEXT, tgqual TEXT, tgoldtable NAME, tgnewtable NAME);
            CREATE TABLE pg_catalog.pg_rewrite (oid OID, rulename NAME, ev_class OID, ev_type CHAR, ev_enabled CHAR, is_instead BOOLEAN);
            CREATE TABLE pg_catalog.pg_foreign_table (ftrelid OID, ftserver OID, ftoptions TEXT);
            CREATE TABLE pg_catalog.pg_foreign_server (oid OID, srvname NAME, srvowner OID, srvfdw OID);
            CREATE TABLE pg_catalog.pg_foreign_data_wrapper (oid OID, fdwname NAME, fdwowner OID);
            CREATE TABLE pg_catalog.pg_partitioned_table (partrelid OID, partstrat CHAR, partnatts INT2, partdefid OID, partattrs TEXT);
            CREATE TABLE pg_catalog.pg_extension (oid OID, extname NAME, extowner OID, extnamespace OID, extrelocatable BOOLEAN, extversion TEXT);
            CREATE TABLE pg_catalog.pg_enum (oid OID, enumtypid OID, enumsortorder FLOAT4, enumlabel NAME);
            CREATE TABLE pg_catalog.pg_range (rngtypid OID, rngsubtype OID, rngmultitypid OID);
            CREATE TABLE pg_catalog.pg_sequence (seqrelid OID, seqtypid OID, seqstart INT8, seqincrement INT8, seqmax INT8, seqmin INT8,
              seqcache INT8, seqcycle BOOLEAN);
            CREATE TABLE pg_catalog.pg_depend (classid OID, objid OID, objsubid INT4, refclassid OID, refobjid OID, refobjsubid INT4, deptype CHAR);
            CREATE TABLE pg_catalog.pg_collation (oid OID, collname NAME, collnamespace OID, collprovider CHAR, collcollate TEXT, collctype TEXT);
            CREATE TABLE pg_catalog.pg_event_trigger (oid OID, evtname NAME, evtevent NAME, evtowner OID, evtfoid OID, evtenabled CHAR);
            CREATE TABLE pg_catalog.pg_opclass (oid OID, opcname NAME, opcnamespace OID, opcmethod OID);
            CREATE TABLE pg_catalog.pg_operator (oid OID, oprname NAME, oprnamespace OID, oprleft OID, oprright OID, oprresult OID);
            CREATE TABLE pg_catalog.pg_cast (oid OID, castsource OID, casttarget OID, castfunc OID, castcontext CHAR, castmethod CHAR);
            CREATE TABLE pg_catalog.pg_language (oid OID, lanname NAME, lanowner OID);
            CREATE VIEW pg_catalog.pg_user AS SELECT rolname AS usename, oid AS usesysid, rolcreatedb AS usecreatedb, rolsuper AS usesuper FROM pg_roles;
            CREATE VIEW pg_catalog.pg_authid AS SELECT * FROM pg_roles;
            CREATE VIEW pg_catalog.pg_tables AS SELECT n.nspname AS schemaname, c.relname AS tablename, 'sandgate' AS tableowner,
              NULL AS tablespace, c.relhasindex AS hasindexes, c.relhasrules AS hasrules, c.relhastriggers AS hastriggers,
              c.relrowsecurity AS rowsecurity FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r';
            CREATE VIEW pg_catalog.pg_views AS SELECT NULL AS schemaname, NULL AS viewname, NULL AS viewowner, NULL AS definition WHERE 0;
            CREATE VIEW pg_catalog.pg_matviews AS SELECT NULL AS schemaname, NULL AS matviewname WHERE 0;
            CREATE VIEW pg_catalog.pg_indexes AS SELECT NULL AS schemaname, NULL AS tablename, NULL AS indexname, NULL AS tablespace, NULL AS indexdef WHERE 0;
            CREATE TABLE information_schema.schemata (catalog_name TEXT, schema_name TEXT, schema_owner TEXT);
            CREATE TABLE information_schema.tables (table_catalog TEXT, table_schema TEXT, table_name TEXT, table_type TEXT,
              self_referencing_column_name TEXT, reference_generation TEXT, user_defined_type_catalog TEXT, user_defined_type_schema TEXT,
              user_defined_type_name TEXT, is_insertable_into TEXT, is_typed TEXT, commit_action TEXT);
            CREATE TABLE information_schema.columns (table_catalog TEXT, table_schema TEXT, table_name TEXT, column_name TEXT,
              ordinal_position INT4, column_default TEXT, is_nullable TEXT, data_type TEXT, character_maximum_length INT4,
              character_octet_length INT4, numeric_precision INT4, numeric_precision_radix INT4, numeric_scale INT4, datetime_precision INT4,
              udt_catalog TEXT, udt_schema TEXT, udt_name TEXT, is_identity TEXT, is_generated TEXT, is_updatable TEXT);
            CREATE VIEW information_schema.views AS SELECT NULL AS table_catalog, NULL AS table_schema, NULL AS table_name WHERE 0;
            """)
        try fill(description: description, declaredTypes: declaredTypes)
        try registerFunctions()
        // Filled: from now on only reads of the catalog and the functions it needs. PRAGMA would
        // change process-wide SQLite state (`hard_heap_limit` starved the ledger; red team), and
        // SQLite's own functions can build huge values in one call, beyond any deadline.
        try db.execute("PRAGMA query_only = 1")
        db.setLimit(.length, 100_000)
        db.setLimit(.sqlLength, 1_000_000)
        db.setLimit(.attached, 2)
        let denied = self.denied
        db.setAuthorizer { request in
            switch request.action {
            case .select, .recursive: return .allow
            case .read:
                let table = (request.first ?? "").lowercased()
                guard table.hasPrefix("pragma_") || table.hasPrefix("sqlite_") else { return .allow }
                denied.what = "table \(table)"
                return .deny
            case .function:
                let name = (request.second ?? "").lowercased()
                guard !Self.allowedFunctions.contains(name) else { return .allow }
                denied.what = "function \(name)()"
                return .deny
            default:
                denied.what = "statement (only SELECT)"
                return .deny
            }
        }
        db.setProgressHandler(every: 100) { [unowned self] in DispatchTime.now().uptimeNanoseconds > self.deadline }
    }

    /// SQLite functions catalog queries may call (besides the ones registered here): the ones
    /// client libraries' introspection uses, none that builds large values.
    static let allowedFunctions: Set<String> = [
        "count", "min", "max", "sum", "avg", "total", "group_concat", "coalesce", "ifnull", "nullif", "iif", "lower", "upper",
        "length", "substr", "substring", "trim", "ltrim", "rtrim", "instr", "abs", "round", "json_object", "json_array",
        "like", "glob", "regexp", "match", "cast", "typeof", "quote", "replace", "concat", "concat_ws", "row_number", "rank",
        "dense_rank", "lag", "lead", "first_value", "last_value", "nth_value", "json_group_array", "json_group_object",
        "version", "current_schema", "current_schemas", "current_database", "current_user", "pg_backend_pid", "pg_is_in_recovery",
        "pg_encoding_to_char", "pg_get_userbyid", "pg_table_is_visible", "pg_type_is_visible", "pg_function_is_visible",
        "pg_collation_is_visible", "has_table_privilege", "has_schema_privilege", "has_database_privilege", "has_column_privilege",
        "obj_description", "shobj_description", "col_description", "pg_get_expr", "pg_get_indexdef", "pg_get_constraintdef",
        "pg_get_viewdef", "pg_get_triggerdef", "pg_get_partkeydef", "pg_get_statisticsobjdef_columns", "pg_get_function_result",
        "pg_get_function_arguments", "pg_get_serial_sequence", "pg_get_ruledef", "pg_tablespace_location",
        "pg_get_partition_constraintdef", "pg_relation_is_publishable", "array_upper", "array_length", "pg_relation_size",
        "pg_total_relation_size", "pg_table_size", "pg_indexes_size", "pg_database_size", "format_type", "array_to_string",
        "quote_ident", "pg_size_pretty", "array_lower", "current_setting", "sg_regclass", "sg_regtype", "sg_regproc",
        "sg_regnamespace", "sg_regclass_name", "sg_regtype_name", "sg_regproc_name", "sg_regnamespace_name", "to_regtype",
        "to_regclass", "to_regnamespace",
    ]

    /// The server settings a session reports: `SHOW name` and the `pg_settings` table.
    static let settings: [(name: String, value: String)] = [
        ("server_version", PGProtocolState.serverVersion), ("server_version_num", "150000"), ("client_encoding", "UTF8"),
        ("server_encoding", "UTF8"), ("DateStyle", "ISO, MDY"), ("TimeZone", "UTC"), ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"), ("search_path", "public"), ("max_identifier_length", "63"),
        ("transaction_isolation", "read committed"), ("default_transaction_isolation", "read committed"),
        ("default_transaction_read_only", "on"), ("transaction_read_only", "on"),
        ("lc_collate", "C.UTF-8"), ("lc_ctype", "C.UTF-8"), ("application_name", ""), ("extra_float_digits", "1"),
    ]

    /// The policy version the catalog was built from (rebuilt when a reload changes it).
    var policyVersion = ""

    /// What the authorizer refused last (for the error message); used on one thread at a time.
    final class Denied: @unchecked Sendable { var what = "" }
    private let denied = Denied()

    private func fill(description: DatasetDescription, declaredTypes: [String: [String: String]]) throws(SQLiteError) {
        let db = connection
        func insert(_ table: String, _ values: [SQLValue]) throws(SQLiteError) {
            let marks = Array(repeating: "?", count: values.count).joined(separator: ",")
            _ = try db.rows("INSERT INTO \(table) VALUES (\(marks))", values)
        }
        for (oid, name) in [(Self.catalogNamespace, "pg_catalog"), (Self.publicNamespace, "public"), (Self.informationNamespace, "information_schema")] {
            try insert("pg_catalog.pg_namespace", [.integer(oid), .text(name), .integer(Self.ownerOID), .null])
        }
        try insert("information_schema.schemata", [.text(dataset), .text("public"), .text("sandgate")])
        try insert("pg_catalog.pg_database", [.integer(Self.databaseOID), .text(dataset), .integer(Self.ownerOID), .integer(6), .text("c"),
                                              .integer(0), .integer(1), .integer(-1), .text("C.UTF-8"), .text("C.UTF-8"), .null, .null, .null, .integer(1663)])
        try insert("pg_catalog.pg_roles", [.integer(Self.ownerOID), .text("sandgate"), .integer(0), .integer(1), .integer(0), .integer(0), .integer(0), .integer(0), .integer(-1), .null, .integer(0), .null])
        try insert("pg_catalog.pg_roles", [.integer(Self.ownerOID + 1), .text(consumer), .integer(0), .integer(1), .integer(0), .integer(0), .integer(1), .integer(0), .integer(-1), .null, .integer(0), .null])
        try insert("pg_catalog.pg_am", [.integer(2), .text("heap"), .text("heap_tableam_handler"), .text("t")])
        for type in [PGType.bool, .bytea, .char, .name, .int8, .int2, .int4, .text, .oid, .float4, .float8, .unknown, .varchar, .date, .timestamp, .timestamptz] {
            let typname: String
            switch type {
            case .bool: typname = "bool"
            case .float4: typname = "float4"
            case .float8: typname = "float8"
            case .varchar: typname = "varchar"
            case .timestamptz: typname = "timestamptz"
            case .char: typname = "char"
            default: typname = type.name.split(separator: " ").first.map(String.init) ?? type.name
            }
            let category: String
            switch type {
            case .bool: category = "B"
            case .int2, .int4, .int8, .float4, .float8, .oid: category = "N"
            case .date, .timestamp, .timestamptz: category = "D"
            case .bytea: category = "U"
            default: category = "S"
            }
            let pgName = [PGType.int8: "int8", .int2: "int2", .int4: "int4", .timestamp: "timestamp", .date: "date", .text: "text", .bytea: "bytea", .oid: "oid", .name: "name", .unknown: "unknown"][type] ?? typname
            try insert("pg_catalog.pg_type", [.integer(Int64(type.rawValue)), .text(pgName), .integer(Self.catalogNamespace), .integer(Self.ownerOID),
                                              .integer(Int64(type.size)), .integer(type.size > 0 && type.size <= 8 ? 1 : 0), .text("b"), .text(category),
                                              .integer(0), .integer(1), .text(","), .integer(0), .integer(0), .integer(0), .text(pgName + "in"),
                                              .text(pgName + "out"), .text(pgName + "recv"), .text(pgName + "send"), .integer(0), .integer(-1), .integer(0),
                                              .integer(0), .integer(0), .null, .null, .text("i"), .text("p"), .null, .null, .null, .null, .null])
        }
        for (offset, table) in description.tables.enumerated() {
            let oid = Self.firstTableOID + Int64(offset) * 2
            let comment = table.access == "aggregate"
                ? "aggregate only: released in groups of at least \(table.minGroupSize ?? 0) distinct units"
                : "rows" + (table.rowFilter ? " (filtered by the data holder)" : "")
            try insert("pg_catalog.pg_class", [
                .integer(oid), .text(table.name), .integer(Self.publicNamespace), .integer(oid + 1), .integer(0), .integer(Self.ownerOID),
                .integer(2), .integer(oid), .integer(0), .integer(0), .real(-1), .integer(0), .integer(0),
                .integer(0), .integer(0), .text("p"), .text("r"), .integer(Int64(table.columns.count)), .integer(0),
                .integer(0), .integer(0), .integer(0), .integer(0), .integer(0),
                .integer(1), .text("d"), .integer(0), .integer(0), .integer(0), .integer(0),
                .null, .null, .null, .integer(0)])
            try insert("pg_catalog.pg_description", [.integer(oid), .integer(1259), .integer(0), .text(comment)])
            try insert("information_schema.tables", [.text(dataset), .text("public"), .text(table.name), .text("BASE TABLE"),
                                                     .null, .null, .null, .null, .null, .text("NO"), .text("NO"), .null])
            for (position, column) in table.columns.enumerated() {
                let declared = column.mask == nil ? declaredTypes[table.name.lowercased()]?[column.name.lowercased()] : nil
                let type = PGType(ColumnType(declared: declared, seen: [], temporalValues: true).kind)
                try insert("pg_catalog.pg_attribute", [
                    .integer(oid), .text(column.name), .integer(Int64(type.rawValue)), .integer(-1), .integer(Int64(type.size)),
                    .integer(Int64(position + 1)), .integer(0), .integer(-1), .integer(-1), .integer(type.size > 0 ? 1 : 0), .text("i"),
                    .text("p"), .text(""), .integer(0), .integer(0), .integer(0), .text(""), .text(""), .integer(0),
                    .integer(1), .integer(0), .integer(0), .null, .null, .null, .null])
                var remark = "role: \(column.role)"
                if let mask = column.maskSummary ?? column.mask { remark += ", masked: \(mask)" }
                if !column.aggregates.isEmpty { remark += ", aggregates: \(column.aggregates.joined(separator: ", "))" }
                try insert("pg_catalog.pg_description", [.integer(oid), .integer(1259), .integer(Int64(position + 1)), .text(remark)])
                try insert("information_schema.columns", [
                    .text(dataset), .text("public"), .text(table.name), .text(column.name), .integer(Int64(position + 1)), .null,
                    .text("YES"), .text(type.name), .null, .null, .null, .null, .null, .null, .text(dataset), .text("pg_catalog"),
                    .text([PGType.int8: "int8", .float8: "float8", .bytea: "bytea", .date: "date", .timestamp: "timestamp"][type] ?? "text"),
                    .text("NO"), .text("NEVER"), .text("NO")])
            }
        }
        for (name, value) in Self.settings {
            try insert("pg_catalog.pg_settings", [.text(name), .text(value), .null, .null, .null, .text("user"), .text("string"), .text("default"), .text(value), .text(value)])
        }
    }

    private func registerFunctions() throws(SQLiteError) {
        let db = connection
        let dataset = self.dataset, consumer = self.consumer
        func constant(_ name: String, _ count: Int32, _ value: SQLValue) throws(SQLiteError) {
            try db.createFunction(name: name, argumentCount: count, deterministic: true) { _, result in
                switch value {
                case .integer(let number): result.setInteger(number)
                case .text(let text): var copy = text; copy.withUTF8 { result.setText($0) }
                default: result.setNull()
                }
            }
        }
        try constant("version", 0, .text("PostgreSQL \(PGProtocolState.serverVersion) (sandgate data-sandbox gateway; SQLite dialect, read-only)"))
        try constant("current_schema", 0, .text("public"))
        try constant("current_schemas", 1, .text("{public}"))
        try constant("current_database", 0, .text(dataset))
        try constant("current_user", 0, .text(consumer))
        try constant("pg_backend_pid", 0, .integer(0))
        try constant("pg_is_in_recovery", 0, .integer(0))
        try constant("pg_encoding_to_char", 1, .text("UTF8"))
        try constant("pg_get_userbyid", 1, .text("sandgate"))
        try constant("pg_table_is_visible", 1, .integer(1))
        try constant("pg_type_is_visible", 1, .integer(1))
        try constant("pg_function_is_visible", 1, .integer(1))
        try constant("pg_collation_is_visible", 1, .integer(1))
        for (name, count) in [("has_table_privilege", 2), ("has_table_privilege", 3), ("has_schema_privilege", 2), ("has_schema_privilege", 3),
                              ("has_database_privilege", 2), ("has_database_privilege", 3), ("has_column_privilege", 3), ("has_column_privilege", 4)] {
            try constant(name, Int32(count), .integer(1))
        }
        for (name, count) in [("obj_description", 1), ("shobj_description", 2), ("pg_get_expr", 2), ("pg_get_expr", 3),
                              ("pg_get_indexdef", 1), ("pg_get_indexdef", 3), ("pg_get_constraintdef", 1), ("pg_get_constraintdef", 2),
                              ("pg_get_viewdef", 1), ("pg_get_viewdef", 2), ("pg_get_triggerdef", 1), ("pg_get_triggerdef", 2),
                              ("pg_get_partkeydef", 1), ("pg_get_statisticsobjdef_columns", 1), ("pg_get_function_result", 1),
                              ("pg_get_function_arguments", 1), ("pg_get_serial_sequence", 2), ("pg_get_ruledef", 1), ("pg_tablespace_location", 1),
                              ("pg_get_partition_constraintdef", 1)] {
            try constant(name, Int32(count), .null)
        }
        for (name, count) in [("pg_relation_is_publishable", 1), ("array_upper", 2), ("array_length", 2), ("pg_relation_size", 1), ("pg_total_relation_size", 1), ("pg_table_size", 1), ("pg_indexes_size", 1), ("pg_database_size", 1)] {
            try constant(name, Int32(count), .integer(0))
        }
        try db.createFunction(name: "obj_description", argumentCount: 2, deterministic: true) { [unowned self] arguments, result in
            self.describe(arguments, subid: 0, result)
        }
        try db.createFunction(name: "col_description", argumentCount: 2, deterministic: true) { [unowned self] arguments, result in
            self.describe(arguments, subid: arguments.integer(at: 1), result)
        }
        try db.createFunction(name: "format_type", argumentCount: 2, deterministic: true) { arguments, result in
            var name = PGType(rawValue: Int32(truncatingIfNeeded: arguments.integer(at: 0)))?.name ?? "unknown"
            name.withUTF8 { result.setText($0) }
        }
        for (name, count) in [("array_to_string", 2), ("array_to_string", 3), ("quote_ident", 1), ("pg_size_pretty", 1), ("array_lower", 2)] {
            try db.createFunction(name: name, argumentCount: Int32(count), deterministic: true) { arguments, result in
                result.setArgument(arguments, at: 0)
            }
        }
        try db.createFunction(name: "current_setting", argumentCount: 1, deterministic: true) { [unowned self] arguments, result in
            let key = arguments.withText(at: 0) { String(decoding: $0, as: UTF8.self) }
            var value = (try? self.connection.scalar("SELECT setting FROM pg_settings WHERE lower(name) = lower(?)", [.text(key)]))
                .flatMap { if case .text(let text) = $0 { text } else { nil } } ?? ""
            value.withUTF8 { result.setText($0) }
        }
        // oid::regclass::text and friends: the object's name.
        for (name, query) in [("sg_regclass_name", "SELECT relname FROM pg_class WHERE oid = ?"), ("sg_regtype_name", "SELECT typname FROM pg_type WHERE oid = ?"),
                              ("sg_regproc_name", "SELECT proname FROM pg_proc WHERE oid = ?"), ("sg_regnamespace_name", "SELECT nspname FROM pg_namespace WHERE oid = ?")] {
            try db.createFunction(name: name, argumentCount: 1, deterministic: true) { [unowned self] arguments, result in
                guard arguments.type(at: 0) == .integer else { return result.setArgument(arguments, at: 0) }
                if case .text(var text)? = try? self.connection.scalar(query, [.integer(arguments.integer(at: 0))]) {
                    text.withUTF8 { result.setText($0) }
                } else {
                    result.setNull()
                }
            }
        }
        for (name, query) in [("to_regtype", "SELECT oid FROM pg_type WHERE typname = ?"), ("to_regclass", "SELECT oid FROM pg_class WHERE relname = ?"),
                              ("to_regnamespace", "SELECT oid FROM pg_namespace WHERE nspname = ?")] {
            try db.createFunction(name: name, argumentCount: 1, deterministic: true) { [unowned self] arguments, result in
                guard arguments.type(at: 0) != .null else { return result.setNull() }
                let text = arguments.withText(at: 0) { String(decoding: $0, as: UTF8.self) }
                let bare = text.split(separator: ".").last.map(String.init)?.trimmingCharacters(in: "\"") ?? text
                if case .integer(let oid)? = try? self.connection.scalar(query, [.text(bare)]) { result.setInteger(oid) } else { result.setNull() }
            }
        }
        for name in ["sg_regclass", "sg_regtype", "sg_regproc", "sg_regnamespace"] {
            try db.createFunction(name: name, argumentCount: 1, deterministic: true) { [unowned self] arguments, result in
                if arguments.type(at: 0) == .integer { return result.setInteger(arguments.integer(at: 0)) }
                let text = arguments.withText(at: 0) { String(decoding: $0, as: UTF8.self) }
                let bare = text.split(separator: ".").last.map(String.init)?.trimmingCharacters(in: "\"") ?? text
                let query: String
                switch name {
                case "sg_regtype": query = "SELECT oid FROM pg_type WHERE typname = ?"
                case "sg_regnamespace": query = "SELECT oid FROM pg_namespace WHERE nspname = ?"
                case "sg_regproc": query = "SELECT oid FROM pg_proc WHERE proname = ?"
                default: query = "SELECT oid FROM pg_class WHERE relname = ?"
                }
                if case .integer(let oid)? = try? self.connection.scalar(query, [.text(bare)]) {
                    result.setInteger(oid)
                } else if name == "sg_regclass", ["pg_class", "pg_type", "pg_namespace", "pg_attribute", "pg_proc"].contains(bare) {
                    result.setInteger(["pg_class": 1259, "pg_type": 1247, "pg_namespace": 2615, "pg_attribute": 1249, "pg_proc": 1255][bare] ?? 0)
                } else {
                    result.setInteger(0)
                }
            }
        }
        // `~` and `~*` (PGDialect writes them as REGEXP and MATCH).
        for (name, caseless) in [("regexp", false), ("match", true)] {
            try db.createFunction(name: name, argumentCount: 2, deterministic: true) { [unowned self] arguments, result in
                guard arguments.type(at: 0) != .null, arguments.type(at: 1) != .null else { return result.setNull() }
                let pattern = arguments.withText(at: 0) { String(decoding: $0, as: UTF8.self) }
                let subject = arguments.withText(at: 1) { String(decoding: $0, as: UTF8.self) }
                guard let regex = self.regex(pattern, caseless: caseless) else { return result.setError("invalid regular expression") }
                let found = regex.firstMatch(in: subject, range: NSRange(subject.startIndex..., in: subject)) != nil
                result.setInteger(found ? 1 : 0)
            }
        }
    }

    private func describe(_ arguments: FunctionArguments, subid: Int64, _ result: FunctionResult) {
        let oid = arguments.integer(at: 0)
        if case .text(var text)? = try? connection.scalar("SELECT description FROM pg_description WHERE objoid = ? AND objsubid = ?", [.integer(oid), .integer(subid)]) {
            text.withUTF8 { result.setText($0) }
        } else {
            result.setNull()
        }
    }

    private func regex(_ pattern: String, caseless: Bool) -> NSRegularExpression? {
        let key = (caseless ? "i:" : "c:") + pattern
        if let cached = regexCache[key] { return cached }
        guard pattern.utf8.count <= 1000, let regex = try? NSRegularExpression(pattern: pattern, options: caseless ? [.caseInsensitive] : []) else { return nil }
        if regexCache.count > 100 { regexCache.removeAll() }
        regexCache[key] = regex
        return regex
    }

    /// Runs a translated catalog query (at most 250 ms, 10,000 rows).
    func run(_ sql: String, parameters: [SQLValue]) -> Result<Answer, GatewayError> {
        deadline = DispatchTime.now().uptimeNanoseconds + 250_000_000
        denied.what = ""
        defer { deadline = .max }
        do {
            let (prepared, hasMore) = try connection.prepareSingle(sql)
            guard let statement = prepared else { return .failure(GatewayError(.syntaxError, "the query is empty")) }
            guard !hasMore else { return .failure(GatewayError(.notASelect, "send one statement at a time")) }
            guard statement.isReadOnly else { return .failure(GatewayError(.notASelect, "the catalog is read-only")) }
            let count = statement.parameterCount
            for index in 0..<min(count, parameters.count) { try statement.bind(parameters[index], at: index + 1) }
            var columns = (0..<statement.columnCount).map { index in
                PGColumn(name: statement.columnName(at: index), type: Self.type(declared: statement.declaredType(at: index)))
            }
            var rows: [[SQLValue]] = []
            var seen = Array(repeating: StorageClasses(), count: columns.count)
            while try statement.step() {
                guard rows.count < 10_000 else { break }
                let row = (0..<columns.count).map { statement.value(at: $0) }
                for (index, value) in row.enumerated() {
                    switch value {
                    case .integer: seen[index].insert(.integer)
                    case .real: seen[index].insert(.real)
                    case .text: seen[index].insert(.text)
                    case .blob: seen[index].insert(.blob)
                    case .null: break
                    }
                }
                rows.append(row)
            }
            for index in columns.indices where statement.declaredType(at: index) == nil {
                columns[index] = PGColumn(name: columns[index].name, type: PGType(ColumnType(declared: nil, seen: seen[index]).kind))
            }
            return .success(Answer(columns: columns, rows: rows))
        } catch {
            if error.isInterrupt { return .failure(GatewayError(.timeout, "the catalog query ran longer than 250 ms")) }
            if error.isAuthorizationDenied {
                return .failure(GatewayError(.notASelect, "the catalog does not answer this \(denied.what): it answers SELECTs of its tables with the functions client libraries use",
                                             hint: "PRAGMA, writes and SQLite's own functions are not available in catalog queries"))
            }
            return .failure(GatewayError(.syntaxError, "catalog query not supported: \(error.message)",
                                         hint: "sandgate emulates the PostgreSQL catalog for the tables and columns you may see; `sandgate describe` lists them"))
        }
    }

    /// Column types of catalog tables from their declarations.
    static func type(declared: String?) -> PGType {
        switch declared?.uppercased() {
        case "OID"?: .oid
        case "NAME"?: .name
        case "BOOLEAN"?: .bool
        case "CHAR"?: .char
        case "INT2"?: .int2
        case "INT4"?: .int4
        case "INT8"?: .int8
        case "FLOAT4"?: .float4
        case "TEXT"?: .text
        default: .text
        }
    }
}
