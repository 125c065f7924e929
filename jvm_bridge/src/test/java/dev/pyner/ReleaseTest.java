package dev.pyner;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.DataInputStream;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;

/** What a release of pyner-jvm promises about itself: one version, and the Java it needs. */
class ReleaseTest {

    @Test
    void pynerJvmAndThePythonPackageHaveOneVersion() throws Exception {
        // The pom's <version> is the release's; pyner.__version__ (pyner/__init__.py) must be the same,
        // so `make jvm-release`, the wheel and the samples all carry one number.
        String init = Files.readString(Path.of("..", "pyner", "__init__.py"), StandardCharsets.UTF_8);
        Matcher m = Pattern.compile("(?m)^__version__\\s*=\\s*\"([^\"]+)\"").matcher(init);
        assertTrue(m.find(), "pyner/__init__.py has no __version__ = \"...\" line");
        assertEquals(m.group(1), PynerModel.version(),
                "pyner.__version__ and jvm_bridge/pom.xml's <version> differ: change both (one release, one version)");
    }

    @Test
    void everyClassTargetsJava17SoOlderJavasGetTheClassFileVersionError() throws Exception {
        // docs/scala.md documents what Java 8/11 print: "UnsupportedClassVersionError ... class file
        // version 61.0"; that holds only while every class is compiled for 17 (major version 61).
        List<Path> classes;
        try (Stream<Path> s = Files.walk(Path.of("target", "classes"))) {
            classes = s.filter(p -> p.toString().endsWith(".class")).collect(Collectors.toList());
        }
        assertFalse(classes.isEmpty(), "no classes under target/classes");
        for (Path c : classes) {
            try (InputStream in = Files.newInputStream(c); DataInputStream d = new DataInputStream(in)) {
                assertEquals(0xCAFEBABE, d.readInt(), c + " is not a class file");
                d.readUnsignedShort(); // minor
                assertEquals(61, d.readUnsignedShort(), c + ": class file major version (61 = Java 17)");
            }
        }
    }
}
