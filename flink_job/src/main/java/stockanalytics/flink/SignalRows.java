package stockanalytics.flink;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.functions.ScalarFunction;
import org.apache.flink.types.Row;

/**
 * The enriched record's {@code signals}: one row per signal, parsed from the text the analysis
 * operator writes ({@code flink_job/schema.py}, {@code encode_signals}): signals separated by U+001E,
 * their fields (type, direction, value, detail, timeframe) by U+001F; an empty value is NULL, and an
 * empty text no signal.
 *
 * <p>Why this exists: in thread mode PyFlink converts every ROW that a Python function emits into one
 * reused {@code Row} object ({@code PythonTypeUtils.RowDataConverter}), so an ARRAY of ROWs arrives with
 * every element equal to the last; and every field leaving Python costs a conversion per bar, an
 * ARRAY one per element. One text crosses instead (empty on most bars), and the rows are built here.
 */
public class SignalRows extends ScalarFunction {

    private static final Row[] NONE = new Row[0];

    public @DataTypeHint("ARRAY<ROW<`type` STRING, `direction` STRING, `value` DOUBLE, `detail` STRING, "
            + "`timeframe` STRING>>") Row[] eval(String text) {
        if (text == null || text.isEmpty()) {
            return NONE;
        }
        String[] signals = text.split("\u001e", -1);
        Row[] rows = new Row[signals.length];
        for (int i = 0; i < signals.length; i++) {
            String[] fields = signals[i].split("\u001f", -1);
            if (fields.length != 5) {
                throw new IllegalArgumentException("a signal needs 5 fields, got " + fields.length + ": " + signals[i]);
            }
            Double value = fields[2].isEmpty() ? null : Double.valueOf(fields[2]);
            rows[i] = Row.of(fields[0], fields[1], value, fields[3], fields[4]);
        }
        return rows;
    }
}
