package dev.pyner.artifact;

import java.io.IOException;
import java.io.OutputStream;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * Measures the checksum speed of {@link Manifest#checkFiles()}'s sha256 on one large file (a
 * measurement, not a test): {@code java -cp target/classes:target/test-classes:$(cat
 * target/classpath.txt) dev.pyner.artifact.HashSpeed [GiB] [FILE]}. Without FILE it writes a temp
 * file of random bytes (deleted afterwards); prints the best of 3 runs in GB/s.
 */
public final class HashSpeed {

    private HashSpeed() {}

    public static void main(String[] args) throws Exception {
        double gib = args.length > 0 ? Double.parseDouble(args[0]) : 2.0;
        Path file = args.length > 1 ? Path.of(args[1]) : randomFile((long) (gib * (1L << 30)));
        try {
            long bytes = Files.size(file);
            ThreadMXBean cpu = ManagementFactory.getThreadMXBean();
            double best = Double.MAX_VALUE;
            double bestCpu = Double.MAX_VALUE;
            for (int run = 0; run < 3; run++) {
                long t0 = System.nanoTime();
                long c0 = cpu.getCurrentThreadCpuTime();
                String hex = Manifest.sha256(file);
                double c = (cpu.getCurrentThreadCpuTime() - c0) / 1e9;
                double s = (System.nanoTime() - t0) / 1e9;
                best = Math.min(best, s);
                bestCpu = Math.min(bestCpu, c);
                System.out.printf(Locale.ROOT, "run %d: %.2f s wall (%.2f GB/s), %.2f s CPU (%.2f GB per CPU-second) %s...%n",
                        run, s, bytes / s / 1e9, c, bytes / c / 1e9, hex.substring(0, 12));
            }
            System.out.printf(Locale.ROOT, "sha256 of %d bytes: best %.2f GB/s wall, %.2f GB per CPU-second%n", bytes,
                    bytes / best / 1e9, bytes / bestCpu / 1e9);
        } finally {
            if (args.length <= 1) {
                Files.deleteIfExists(file);
            }
        }
    }

    private static Path randomFile(long bytes) throws IOException {
        Path p = Files.createTempFile("pyner-hash-speed", ".bin");
        SplittableRandom random = new SplittableRandom(1);
        byte[] buf = new byte[8 << 20];
        try (OutputStream out = Files.newOutputStream(p)) {
            for (long left = bytes; left > 0; left -= buf.length) {
                for (int i = 0; i < buf.length; i += 8) {
                    long v = random.nextLong();
                    for (int j = 0; j < 8; j++) {
                        buf[i + j] = (byte) (v >>> (8 * j));
                    }
                }
                out.write(buf, 0, (int) Math.min(buf.length, left));
            }
        }
        return p;
    }
}
