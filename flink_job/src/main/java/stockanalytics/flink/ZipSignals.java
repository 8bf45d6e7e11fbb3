package stockanalytics.flink;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.functions.ScalarFunction;
import org.apache.flink.types.Row;

/**
 * The enriched record's {@code signals}: one row per signal, zipped from five parallel arrays.
 *
 * <p>Why this exists: in thread mode PyFlink converts every ROW that a Python function emits into one
 * reused {@code Row} object ({@code PythonTypeUtils.RowDataConverter}), so an ARRAY of ROWs arrives with
 * every element equal to the last. The analysis operator therefore hands its signals over as arrays of
 * plain values, which convert element by element, and the rows are built here, on the Java side.
 */
public class ZipSignals extends ScalarFunction {

    public @DataTypeHint("ARRAY<ROW<`type` STRING, `direction` STRING, `value` DOUBLE, `detail` STRING, "
            + "`timeframe` STRING>>") Row[] eval(
            String[] types, String[] directions, Double[] values, String[] details, String[] timeframes) {
        if (types == null) {
            return new Row[0];
        }
        Row[] rows = new Row[types.length];
        for (int i = 0; i < types.length; i++) {
            rows[i] = Row.of(types[i], directions[i], values[i], details[i], timeframes[i]);
        }
        return rows;
    }
}
