package stockanalytics.flink;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

import org.apache.flink.table.functions.ScalarFunction;

/**
 * One value of the analysis operator's packed numbers: the float64 at {@code index} of a little-endian
 * array, or NULL where it is NaN or infinite (an indicator still warming up, or not applicable).
 *
 * <p>Why this exists: every field of a row that leaves Python costs a conversion on each side of the
 * bridge, per bar. The operator's numbers therefore cross as one byte string, and SQL takes each
 * column from it here.
 */
public class PackedDouble extends ScalarFunction {

    public Double eval(byte[] packed, int index) {
        if (packed == null) {
            return null;
        }
        double value = ByteBuffer.wrap(packed).order(ByteOrder.LITTLE_ENDIAN).getDouble(index * Double.BYTES);
        return Double.isFinite(value) ? value : null;
    }
}
