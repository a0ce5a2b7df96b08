import java.sql.*;

/** pgjdbc against sandgate's PostgreSQL listener: a PreparedStatement, a refusal and getTables/getColumns. */
public class JdbcClient {
    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/retail";
        try (Connection conn = DriverManager.getConnection(url, "analyst-a", args[1])) {
            try (PreparedStatement statement = conn.prepareStatement("SELECT city, count(*) AS n FROM customers WHERE city = ? GROUP BY city")) {
                for (int round = 0; round < 7; round++) {  // past prepareThreshold (5): server-prepared and binary
                    statement.setString(1, "Shanghai");
                    try (ResultSet rows = statement.executeQuery()) {
                        while (rows.next()) if (round == 6) System.out.println("prepared: " + rows.getString(1) + " " + rows.getLong(2));
                    }
                }
            }
            try (PreparedStatement statement = conn.prepareStatement("SELECT customer_id FROM customers WHERE customer_id = ?")) {
                statement.setInt(1, 7);
                try (ResultSet rows = statement.executeQuery()) { System.out.println("int parameter rows: " + (rows.next() ? 1 : 0)); }
            }
            try (Statement statement = conn.createStatement()) {
                statement.executeQuery("SELECT salary FROM customers");
                System.out.println("refusal: none");
            } catch (SQLException e) {
                System.out.println("refusal: " + e.getSQLState() + " " + e.getMessage().split("\n")[0]);
            }
            DatabaseMetaData meta = conn.getMetaData();
            try (ResultSet tables = meta.getTables(null, null, "%", new String[] {"TABLE"})) {
                StringBuilder names = new StringBuilder();
                while (tables.next()) names.append(tables.getString("TABLE_NAME")).append(' ');
                System.out.println("tables: " + names.toString().trim());
            }
            try (ResultSet columns = meta.getColumns(null, null, "orders", "%")) {
                StringBuilder names = new StringBuilder();
                while (columns.next()) names.append(columns.getString("COLUMN_NAME")).append(':').append(columns.getString("TYPE_NAME")).append(' ');
                System.out.println("columns: " + names.toString().trim());
            }
        }
    }
}
