// Writes SSTables of one JanusGraph table of TheHive's keyspace with Cassandra's
// own CQLSSTableWriter (cassandra-all 4.1, the same jar the sandbox's node runs),
// for tests/bench/e2e-bench.sh: loading a gigabyte through CQL inserts takes
// many minutes on the test machine, writing the SSTables offline and handing
// them to the live node with `nodetool import` takes seconds.
//
//   java -cp CLASSES:LIB/* SSTableFill DIR KEYSPACE SEED TABLE=MEGABYTES...
//
// Each table's SSTables go into DIR/TABLE/ (what `nodetool import KEYSPACE TABLE DIR/TABLE` takes).
//
// Rows have the shape of the sandbox's CQL fill (tests/sandbox/lib/real_cassandra_cql.py):
// an 8-byte partition key, 1 to 8 clustering columns of 3-13 bytes, random values of
// 16-1500 bytes (incompressible, as JanusGraph's serialized properties mostly are).
// Deterministic: the same arguments give the same rows.
import java.io.File;
import java.nio.ByteBuffer;
import java.util.Random;

import org.apache.cassandra.io.sstable.CQLSSTableWriter;

public final class SSTableFill {
    public static void main(String[] args) throws Exception {
        if (args.length < 4) {
            System.err.println("usage: SSTableFill DIR KEYSPACE SEED TABLE=MEGABYTES...");
            System.exit(2);
        }
        for (int i = 3; i < args.length; i++) {
            String[] pair = args[i].split("=", 2);
            fill(args[0] + "/" + pair[0], args[1], pair[0], (long) (Double.parseDouble(pair[1]) * 1024 * 1024), args[2]);
        }
    }

    private static void fill(String dir, String keyspace, String table, long budget, String seed) throws Exception {
        new File(dir).mkdirs();
        // The table as the sandbox creates it (real_cassandra_cql.py CREATE_TABLE).
        String schema = String.format(
            "CREATE TABLE %s.%s (key blob, column1 blob, value blob, PRIMARY KEY ((key), column1)) "
            + "WITH CLUSTERING ORDER BY (column1 ASC) "
            + "AND compression = {'chunk_length_in_kb': '64', 'class': 'LZ4Compressor'}", keyspace, table);
        String insert = String.format("INSERT INTO %s.%s (key, column1, value) VALUES (?, ?, ?)", keyspace, table);
        CQLSSTableWriter writer = CQLSSTableWriter.builder()
            .inDirectory(dir).forTable(schema).using(insert).withBufferSizeInMB(64).build();
        Random rng = new Random((seed + ":" + table).hashCode());
        long rows = 0, partition = 0;
        while (budget > 0) {
            long id = ((long) (seed + ":" + table).hashCode() << 32) ^ (partition * 0x9E3779B97F4A7C15L);
            ByteBuffer key = ByteBuffer.allocate(8).putLong(0, id);
            int columns = 1 + rng.nextInt(8);
            for (int c = 0; c < columns; c++) {
                byte[] column1 = new byte[3 + rng.nextInt(11)];
                rng.nextBytes(column1);
                column1[0] = (byte) c;
                byte[] value = new byte[16 + rng.nextInt(1485)];
                rng.nextBytes(value);
                writer.addRow(key.duplicate(), ByteBuffer.wrap(column1), ByteBuffer.wrap(value));
                budget -= 8 + column1.length + value.length;
                rows++;
            }
            partition++;
        }
        writer.close();
        System.out.println(table + ": " + rows + " rows in " + partition + " partitions");
    }
}
