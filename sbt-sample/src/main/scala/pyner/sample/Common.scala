package pyner.sample

import java.io.PrintStream
import java.nio.file.{Files, Path}

import dev.pyner.{AggregationStrategy, PynerException}

/** One entity as every sample prints and stores it: the pipeline's fields, offsets in code points
  * (Python string indices; `text.substring` needs the UTF-16 offsets that pyner-jvm and the
  * sidecar also give).
  */
final case class Ent(label: String, score: Double, word: String, start: Int, end: Int)

object Ent {
  def of(e: dev.pyner.Entity): Ent = Ent(e.label, e.score, e.word, e.start, e.end)
  def of(e: dev.pyner.grpc.v1.Entity): Ent = Ent(e.getLabel, e.getScore, e.getWord, e.getStart, e.getEnd)

  /** `PER  Angela Merkel  [0, 13)  0.9981` */
  def show(e: Ent): String = f"${e.label}%-6s ${e.word}%-28s [${e.start}, ${e.end})  ${e.score}%.4f"
}

/** A failure the samples explain in one line, with the exit codes of ARCHITECTURE.md
  * (2 usage, 3 input, 4 artifact, 1 anything else).
  */
final class SampleError(message: String, val exitCode: Int, cause: Throwable = null)
    extends RuntimeException(message, cause)

object SampleError {
  def usage(msg: String): SampleError    = new SampleError(msg, 2)
  def input(msg: String): SampleError    = new SampleError(msg, 3)
  def artifact(msg: String): SampleError = new SampleError(msg, 4)
}

/** The samples' `main` wrapper: runs a body, prints `NAME: error: MESSAGE` for a known failure and
  * returns the exit code (mains pass it to `sys.exit`; tests read it).
  */
object Cli {
  def execute(name: String, err: PrintStream = System.err)(body: => Unit): Int =
    try { body; 0 }
    catch {
      case e: Throwable =>
        val (code, message) = describe(e)
        err.println(s"$name: error: $message")
        if (code == 1 && sys.env.contains("PYNER_DEBUG")) e.printStackTrace(err)
        code
    }

  /** Exit code and one-line message for a failure, looking through wrappers (Spark, reflection). */
  def describe(e: Throwable): (Int, String) = rootCause(e) match {
    case s: SampleError                 => (s.exitCode, s.getMessage)
    case p: PynerException              => (4, p.getMessage)
    case i: IllegalArgumentException    => (2, i.getMessage)
    case other                          => (1, s"${other.getClass.getSimpleName}: ${other.getMessage}")
  }

  private def rootCause(e: Throwable): Throwable = {
    var t = e
    while (!t.isInstanceOf[SampleError] && !t.isInstanceOf[PynerException] && t.getCause != null && (t.getCause ne t))
      t = t.getCause
    t
  }

  /** An artifact folder that exists and holds a manifest, or a one-line error naming the path. */
  def requireArtifact(path: Path): Path = {
    if (!Files.exists(path)) throw SampleError.artifact(s"artifact folder not found: $path (make one with `pyner package`)")
    if (!Files.isRegularFile(path.resolve("pyner.json")))
      throw SampleError.artifact(s"$path: no pyner.json here; this folder is not a pyner artifact")
    path
  }

  def aggregation(name: String): AggregationStrategy = AggregationStrategy.fromName(name)

  /** A flag's value as a positive integer, or a usage error naming the flag. */
  def positiveInt(flag: String, value: String): Int =
    scala.util.Try(value.toInt).toOption.filter(_ > 0).getOrElse(throw SampleError.usage(s"$flag needs a positive integer, got '$value'"))
}

/** Runs model loading on a thread with a large stack.
  *
  * Seen here with ONNX Runtime Java 1.29.0 (Linux x86-64): creating a session needs stack in
  * proportion to the length of the process's command line; with a command line of more than about
  * 4 KB (a `java -cp` with Spark's jars, a Spark executor's launch command) the default 1 MB thread
  * stack overflows and the JVM dies with SIGSEGV, without an hs_err file. Inference on an
  * existing session is not affected. A dedicated loading thread with a large stack (address space
  * reserved, not memory committed) avoids it wherever the caller runs: a `main`, a Spark task.
  */
object LargeStack {
  val StackBytes: Long = 256L << 20

  def apply[T](body: => T): T = {
    val result = new java.util.concurrent.atomic.AtomicReference[Either[Throwable, T]]()
    val loader = new Thread(null, () => result.set(try Right(body) catch { case e: Throwable => Left(e) }),
                            "pyner-model-load", StackBytes)
    loader.setDaemon(true)
    loader.start()
    loader.join()
    result.get().fold(e => throw e, identity)
  }
}
