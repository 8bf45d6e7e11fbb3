package stockanalytics.flink;

import java.util.HashMap;
import java.util.Map;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.functions.ScalarFunction;

/**
 * The enriched record's {@code patterns}: TA-Lib function name to its non-zero output, parsed from the
 * text the analysis operator writes ({@code flink_job/schema.py}, {@code encode_patterns}):
 * {@code NAME=VALUE} pairs separated by {@code ;}, empty when no pattern matched (an empty map).
 *
 * <p>Why this exists: a map, or two parallel arrays, leaving Python costs a conversion per element and
 * per bar; one text crosses instead, empty on most bars (see {@link SignalRows}).
 */
public class PatternMap extends ScalarFunction {

    public @DataTypeHint("MAP<STRING, BIGINT>") Map<String, Long> eval(String text) {
        Map<String, Long> patterns = new HashMap<>();
        if (text == null || text.isEmpty()) {
            return patterns;
        }
        for (String pair : text.split(";")) {
            int at = pair.indexOf('=');
            if (at <= 0) {
                throw new IllegalArgumentException("a pattern needs NAME=VALUE, got: " + pair);
            }
            patterns.put(pair.substring(0, at), Long.valueOf(pair.substring(at + 1)));
        }
        return patterns;
    }
}
