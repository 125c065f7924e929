package pyner.sample

import java.nio.charset.StandardCharsets.UTF_8
import java.nio.file.{Files, Paths}

import scala.jdk.CollectionConverters._
import scala.sys.process._

import org.scalatest.funsuite.AnyFunSuite

import dev.pyner.AggregationStrategy
import TestSupport._

/** The examples' `main`s as a user runs them: a plain `java -cp <every jar>` process. Such a
  * command line is tens of kilobytes long, which is what made ONNX Runtime's session creation
  * overflow the default thread stack (see LargeStack); sbt's own forked JVMs hide that.
  */
class MainsSpec extends AnyFunSuite {
  import MainsSpec.Ran

  private val classpath = sys.props.getOrElse("pyner.runtimeClasspath", fail("pyner.runtimeClasspath is not set"))
  private val java = Paths.get(sys.props("java.home"), "bin", "java").toString

  private def runMain(main: String, args: String*): Ran = {
    val cmd = Seq(java, "-Xmx768m", s"-Dlog4j2.configurationFile=${sys.props("pyner.log4j")}") ++
      sys.props("pyner.sparkJavaOptions").split(' ').toSeq ++ Seq("-cp", classpath, s"pyner.sample.$main") ++ args
    assert(cmd.mkString(" ").length > 8000, "the command line is meant to be as long as a real one")
    val (out, err) = (new StringBuilder, new StringBuilder)
    val exit = Process(cmd, None, "DJL_OFFLINE" -> "true", "OPT_OUT_TRACKING" -> "true", "SPARK_LOCAL_IP" -> "127.0.0.1")
      .!(ProcessLogger(l => out.append(l).append('\n'), l => err.append(l).append('\n')))
    Ran(exit, out.toString, err.toString)
  }

  test("InProcess prints the library's entities for the news sentences (exit 0)") {
    val art = artifact("bert-fp32")
    val ran = runMain("InProcess", art.toString)
    assert(ran.exit == 0, s"exit ${ran.exit} (139 = SIGSEGV)\n${ran.err}")
    val expected = InProcess.NewsSentences.zip(InProcess.recognize(art, InProcess.NewsSentences, AggregationStrategy.SIMPLE))
      .flatMap { case (t, ents) => t +: (if (ents.isEmpty) Seq("  (no entities)") else ents.map(e => "  " + Ent.show(e))) }
    assert(ran.out.linesIterator.toSeq == expected)
  }

  test("InProcess with a missing artifact: one line, exit 4") {
    val ran = runMain("InProcess", "/nonexistent/demo")
    assert(ran.exit == 4)
    assert(ran.err == "InProcess: error: artifact folder not found: /nonexistent/demo (make one with `pyner package`)\n")
  }

  test("PlainDjl prints DJL's result next to pyner's (exit 0)") {
    val ran = runMain("PlainDjl", artifact("roberta-fp32").toString, "Angela Merkel met Emmanuel Macron in Berlin.")
    assert(ran.exit == 0, s"exit ${ran.exit} (139 = SIGSEGV)\n${ran.err}")
    assert(ran.out.linesIterator.toSeq.head == "Angela Merkel met Emmanuel Macron in Berlin.")
    assert(ran.out.contains("  plain DJL ("))
  }

  test("SidecarClient with no sidecar: one line naming the address, exit 1") {
    val port = freePort()
    val ran = runMain("SidecarClient", s"127.0.0.1:$port", "text")
    assert(ran.exit == 1)
    assert(ran.err == s"SidecarClient: error: sidecar 127.0.0.1:$port: GetModelInfo failed after 5 attempts: UNAVAILABLE " +
      s"(io exception) (is `pyner serve` running at 127.0.0.1:$port?)\n")
  }

  private val jsonl = Seq(
    """{"id": "a", "text": "Angela Merkel met Emmanuel Macron in Berlin."}""",
    """{"id": "b", "text": "Apple shares rose in Cupertino""",
    """{"id": "c", "text": "The United Nations met in Geneva on Monday."}""",
  )

  test("SparkNer on local[2]: a bad JSON line is reported by number, the rest is written (exit 0)") {
    val dir = tempDir("spark-main")
    val input = Files.write(dir.resolve("docs.jsonl"), jsonl.asJava, UTF_8)
    val out = dir.resolve("out")
    val ran = runMain("SparkNer", "--artifact", artifact("bert-fp32").toString, "--input", input.toString, "--output", out.toString)
    assert(ran.exit == 0, s"exit ${ran.exit} (139 = SIGSEGV)\n${ran.err}")
    assert(ran.out.linesIterator.exists(_.startsWith(s"SparkNer: 2 documents -> $out (jsonl) in ")), ran.out)
    val report = ran.errLines("SparkNer:")
    assert(report.head == s"SparkNer: 1 bad input line(s) skipped (policy: report), all listed in $out.bad-lines")
    assert(report(1).startsWith(s"SparkNer:   $input:2: invalid JSON ("), report(1))
    assert(report.size == 2)
    // one load, logged by the JVM that made it (local[2]: the driver's) and reported on stdout; closed at exit
    val model = ran.errLines("ExecutorModel:")
    assert(model.size == 2, model)
    assert(model.head.startsWith(s"ExecutorModel: loaded ${artifact("bert-fp32")} in ") &&
      model.head.contains(" s (executor driver, pid ") && model.head.endsWith(", load #1 in this JVM)"), model.head)
    assert(model(1) == "ExecutorModel: closed 1 pyner model(s) at JVM shutdown")
    assert(ran.out.linesIterator.exists(_.matches("""SparkNer: 1 model load\(s\) in 1 executor JVM\(s\): executor driver \(pid \d+\) 1""")), ran.out)
    val written = Files.list(out).iterator().asScala.filter(_.getFileName.toString.startsWith("part-"))
      .flatMap(p => Files.readAllLines(p, UTF_8).asScala).toSeq
    assert(written.map(l => mapper.readTree(l).get("id").asText()).sorted == Seq("a", "c"))
  }

  test("SparkNer with --on-bad-line fail: one line, exit 3, nothing written") {
    val dir = tempDir("spark-main-fail")
    val input = Files.write(dir.resolve("docs.jsonl"), jsonl.asJava, UTF_8)
    val out = dir.resolve("out")
    val ran = runMain("SparkNer", "--artifact", artifact("bert-fp32").toString, "--input", input.toString,
                      "--output", out.toString, "--on-bad-line", "fail")
    assert(ran.exit == 3, ran.err)
    val lines = ran.errLines("SparkNer:")
    assert(lines.size == 1 && lines.head.startsWith(s"SparkNer: error: $input: 1 bad line(s), nothing written (policy: fail); first: $input:2: invalid JSON ("), lines)
    assert(!Files.exists(out))
  }
}

object MainsSpec {
  final case class Ran(exit: Int, out: String, err: String) {
    def errLines(prefix: String): Seq[String] = err.linesIterator.filter(_.startsWith(prefix)).toSeq
  }
}
