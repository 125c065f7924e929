package pyner.sample

import java.nio.file.Paths
import java.util.concurrent.ConcurrentHashMap
import java.util.concurrent.atomic.AtomicInteger

import scala.jdk.CollectionConverters._

import com.fasterxml.jackson.databind.{DeserializationFeature, JsonNode, ObjectMapper}
import com.fasterxml.jackson.core.JsonProcessingException
import org.apache.hadoop.fs.Path
import org.apache.spark.SparkFiles
import org.apache.spark.sql.{Encoders, SaveMode, SparkSession}
import org.apache.spark.storage.StorageLevel

import dev.pyner.{OnMissingGpu, PynerModel}
import dev.pyner.artifact.Manifest

/** Batch NER on Apache Spark: a text file in, (id, entities) out as JSON Lines or Parquet.
  *
  * Input: one file, plain-text lines (one document per line, id = line number) or JSON Lines
  * objects with "text" and an optional "id" (default: the line number), told apart by the first
  * non-blank line, exactly as `pyner predict -i FILE` does.
  *
  * Bad lines (JSON Lines input only: not JSON, not an object, "text" not a string) are found in a
  * first pass before any model runs. Policy `--on-bad-line report` (the default): the job goes on
  * without them, prints their line numbers and writes every one to OUTPUT.bad-lines/ (JSON Lines of
  * line, error). Policy `fail`: the job stops before writing anything, naming the first bad lines.
  *
  * The model: one instance per executor JVM, loaded lazily by the first task that needs it, shared
  * by that JVM's concurrent tasks, closed when the JVM shuts down (see [[ExecutorModel]]).
  *
  * {{{
  * sbt-sample/sbtw "runMain pyner.sample.SparkNer --artifact ../artifacts/demo --input docs.txt --output out"
  * }}}
  */
object SparkNer {

  final case class Options(artifact: String = "", input: String = "", output: String = "", format: String = "jsonl",
                           aggregation: String = "simple", onBadLine: String = "report", shipArtifact: Boolean = false,
                           master: Option[String] = None, batchSize: Int = 256, threads: Int = 1, partitions: Int = 0,
                           expectDigest: Option[String] = None, device: String = "cpu",
                           onMissingGpu: OnMissingGpu = OnMissingGpu.FAIL)

  final case class Doc(id: String, line: Long, text: String)
  final case class BadLine(line: Long, error: String)
  final case class Result(id: String, entities: Seq[Ent])
  final case class Summary(documents: Long, badLineCount: Long, firstBadLines: Seq[BadLine], output: String,
                           badLinesOutput: Option[String], seconds: Double)

  val Usage: String =
    """usage: SparkNer --artifact DIR --input FILE --output DIR [--format jsonl|parquet] [--aggregation simple]
      |                [--on-bad-line report|fail] [--ship-artifact] [--master local[2]] [--batch-size 256]
      |                [--threads 1] [--partitions N] [--expect-digest sha256:...] [--device cpu|cuda|cuda:N]
      |                [--on-missing-gpu fail|fallback]""".stripMargin

  def parseArgs(args: Array[String]): Options = {
    def loop(rest: List[String], o: Options): Options = rest match {
      case Nil                                => o
      case "--ship-artifact" :: tail          => loop(tail, o.copy(shipArtifact = true))
      case flag :: value :: tail if flag.startsWith("--") =>
        def int(): Int = scala.util.Try(value.toInt).toOption.filter(_ > 0).getOrElse(throw SampleError.usage(s"$flag needs a positive integer, got '$value'"))
        loop(tail, flag match {
          case "--artifact"    => o.copy(artifact = value)
          case "--input"       => o.copy(input = value)
          case "--output"      => o.copy(output = value)
          case "--format"      => o.copy(format = value)
          case "--aggregation" => o.copy(aggregation = value)
          case "--on-bad-line" => o.copy(onBadLine = value)
          case "--master"      => o.copy(master = Some(value))
          case "--batch-size"  => o.copy(batchSize = int())
          case "--threads"     => o.copy(threads = int())
          case "--partitions"  => o.copy(partitions = int())
          case "--device" =>
            try { dev.pyner.runtime.Gpu.parseDevice(value); o.copy(device = value) }
            catch { case e: IllegalArgumentException => throw SampleError.usage(s"--device: ${e.getMessage}") }
          case "--on-missing-gpu" =>
            try o.copy(onMissingGpu = OnMissingGpu.fromName(value))
            catch { case e: IllegalArgumentException => throw SampleError.usage(s"--on-missing-gpu: ${e.getMessage}") }
          case "--expect-digest" =>
            try o.copy(expectDigest = Some(Manifest.parseDigest(value)))
            catch { case e: IllegalArgumentException => throw SampleError.usage(s"--expect-digest: ${e.getMessage}") }
          case other           => throw SampleError.usage(s"unknown option $other\n$Usage")
        })
      case other :: _ => throw SampleError.usage(s"unexpected argument '$other'\n$Usage")
    }
    val o = loop(args.toList, Options())
    for ((name, v) <- Seq("--artifact" -> o.artifact, "--input" -> o.input, "--output" -> o.output) if v.isEmpty)
      throw SampleError.usage(s"$name is required\n$Usage")
    if (!Set("jsonl", "parquet")(o.format)) throw SampleError.usage(s"--format must be jsonl or parquet, got '${o.format}'")
    if (!Set("report", "fail")(o.onBadLine)) throw SampleError.usage(s"--on-bad-line must be report or fail, got '${o.onBadLine}'")
    try Cli.aggregation(o.aggregation) // rejects unknown names, listing the valid ones
    catch { case e: IllegalArgumentException => throw SampleError.usage(s"--aggregation: ${e.getMessage}") }
    o
  }

  def main(args: Array[String]): Unit = sys.exit(Cli.execute("SparkNer") {
    val o = parseArgs(args)
    val builder = SparkSession.builder().appName("pyner-spark-ner")
    // Under spark-submit the master comes from there; from sbt it defaults to local[2].
    if (!sys.props.contains("spark.master")) {
      val master = o.master.getOrElse("local[2]")
      builder.master(master)
      if (master.startsWith("local")) builder.config("spark.driver.bindAddress", "127.0.0.1").config("spark.driver.host", "127.0.0.1")
    }
    val spark = builder.config("spark.ui.enabled", "false").getOrCreate()
    try {
      val s = run(spark, o)
      println(f"SparkNer: ${s.documents} documents -> ${s.output} (${o.format}) in ${s.seconds}%.1f s " +
        f"(${s.documents / math.max(s.seconds, 1e-9)}%.1f docs/s)")
      report(s).foreach(line => System.err.println("SparkNer: " + line))
    } finally spark.stop()
  })

  /** The lines to print about bad input (none when there was none). */
  def report(s: Summary): Seq[String] =
    if (s.badLineCount == 0) Nil
    else (s"${s.badLineCount} bad input line(s) skipped (policy: report), all listed in ${s.badLinesOutput.getOrElse("-")}" +:
      s.firstBadLines.map(b => s"  ${b.error}"))

  /** Runs the job; throws SampleError for bad options, a missing artifact/input, an existing output. */
  def run(spark: SparkSession, o: Options): Summary = {
    import spark.implicits._
    val sc = spark.sparkContext
    val artifactDir = Cli.requireArtifact(Paths.get(o.artifact).toAbsolutePath.normalize())
    // A pinned artifact is refused on the driver before any work (exit 4, naming both digests), and
    // again by every executor's model load (a shipped or shared copy could differ).
    o.expectDigest.foreach(d => Manifest.read(artifactDir).checkDigest(d))
    val strategy = Cli.aggregation(o.aggregation)
    val hadoopConf = sc.hadoopConfiguration
    val inPath = new Path(o.input)
    val inFs = inPath.getFileSystem(hadoopConf)
    if (!inFs.exists(inPath)) throw SampleError.input(s"input file not found: ${o.input}")
    if (!inFs.getFileStatus(inPath).isFile) throw SampleError.input(s"${o.input}: not a file (give one text or JSON Lines file)")
    val badOut = o.output.stripSuffix("/") + ".bad-lines"
    for (p <- Seq(o.output, badOut)) {
      val path = new Path(p)
      if (path.getFileSystem(hadoopConf).exists(path))
        throw SampleError.usage(s"output $p already exists; remove it or choose another --output")
    }

    // Where executors find the artifact: a path they all see, or a copy shipped with the job.
    val locate: ArtifactLocation =
      if (o.shipArtifact) { sc.addFile(artifactDir.toString, true); Shipped(artifactDir.getFileName.toString) }
      else SharedPath(artifactDir.toString)

    val name = o.input
    val lines = (if (o.partitions > 0) sc.textFile(o.input, o.partitions) else sc.textFile(o.input)).zipWithIndex()
    val mode = InputLines.detect(lines.map(_._1).filter(l => !InputLines.isBlank(l)).take(1).headOption)
    val parsed = lines.mapPartitions { it =>
      val parser = new InputLines.Parser(name, mode)
      it.flatMap { case (body, index) => parser.parse(index + 1, body) }
    }.persist(StorageLevel.MEMORY_AND_DISK)
    try {
      val bad = parsed.flatMap(_.left.toOption)
      val badCount = bad.count()
      val firstBad = bad.take(20).toSeq
      if (badCount > 0 && o.onBadLine == "fail")
        throw SampleError.input(s"$name: $badCount bad line(s), nothing written (policy: fail); first: " +
          firstBad.take(5).map(_.error).mkString("; "))

      val started = System.nanoTime()
      val (batchSize, threads, digest, device, onMissingGpu) = (o.batchSize, o.threads, o.expectDigest, o.device, o.onMissingGpu)
      // START spark
      val results = parsed.flatMap(_.toOption).mapPartitions { docs =>
        val model = ExecutorModel.get(locate.resolve(), threads, digest, device, onMissingGpu) // once per executor JVM
        docs.grouped(batchSize).flatMap { batch =>
          val entities = model.predict(batch.map(_.text).asJava, strategy).asScala
          batch.zip(entities).map { case (doc, ents) => Result(doc.id, ents.asScala.toSeq.map(Ent.of)) }
        }
      }
      val writer = spark.createDataset(results)(Encoders.product[Result]).write.mode(SaveMode.ErrorIfExists)
      if (o.format == "parquet") writer.parquet(o.output) else writer.option("compression", "none").json(o.output)
      // END spark
      val seconds = (System.nanoTime() - started) / 1e9
      val documents = spark.read.format(if (o.format == "parquet") "parquet" else "json").load(o.output).count()
      val badOutput = if (badCount > 0) {
        bad.toDS().coalesce(1).write.mode(SaveMode.ErrorIfExists).option("compression", "none").json(badOut)
        Some(badOut)
      } else None
      Summary(documents, badCount, firstBad, o.output, badOutput, seconds)
    } finally parsed.unpersist()
  }
}

/** Where an executor finds the artifact folder. */
sealed trait ArtifactLocation extends Serializable { def resolve(): String }
/** A path every node sees (a shared mount, or the local disk in local mode). */
final case class SharedPath(path: String) extends ArtifactLocation { def resolve(): String = path }
/** Shipped by the driver with SparkContext.addFile(dir, recursive = true); found with SparkFiles. */
final case class Shipped(name: String) extends ArtifactLocation { def resolve(): String = SparkFiles.get(name) }

/** One pyner model per executor JVM and artifact folder: loaded by the first task that asks, shared
  * by the JVM's concurrent tasks (PynerModel is thread-safe), closed by a shutdown hook when the
  * executor exits. `loads` counts loads in this JVM (tests check it stays 1 per folder).
  */
object ExecutorModel {
  // START executor-model
  private val models = new ConcurrentHashMap[String, PynerModel]()
  private val loadCount = new AtomicInteger()
  private lazy val hook: Unit = { sys.addShutdownHook(onShutdown()); () }

  def get(artifactDir: String, threads: Int, expectDigest: Option[String] = None, device: String = "cpu",
          onMissingGpu: OnMissingGpu = OnMissingGpu.FAIL): PynerModel = {
    hook // registered once, on first use
    models.computeIfAbsent(artifactDir, dir => {
      loadCount.incrementAndGet()
      val builder = PynerModel.builder().setArtifact(Paths.get(dir)).optThreads(threads)
        .optDevice(device).optOnMissingGpu(onMissingGpu) // cuda:N needs onnxruntime_gpu (docs/scala.md)
      expectDigest.foreach(d => builder.optExpectDigest(d)) // refuses any other artifact
      builder.build()
    })
  }
  // END executor-model

  def loads: Int = loadCount.get()

  private def onShutdown(): Unit = {
    val n = closeAll()
    if (n > 0) System.err.println(s"ExecutorModel: closed $n pyner model(s) at JVM shutdown")
  }

  /** Closes and forgets every model of this JVM (the shutdown hook calls it); returns how many. */
  def closeAll(): Int = {
    val closing = models.keySet().asScala.toList.flatMap(k => Option(models.remove(k)))
    closing.foreach(_.close())
    closing.size
  }
}

/** The input format of `pyner predict -i FILE`, line by line. */
object InputLines {
  sealed trait Mode extends Serializable
  case object Text extends Mode
  case object JsonLines extends Mode

  /** Python's str.isspace for every character (NBSP and NEL included, which Java's trim misses). */
  def isBlank(s: String): Boolean =
    s.forall(c => Character.isWhitespace(c) || Character.isSpaceChar(c) || c == '\u0085')

  /** JSON Lines when the first non-blank line starts with '{', else plain text. */
  def detect(firstNonBlank: Option[String]): Mode =
    if (firstNonBlank.exists(l => l.dropWhile(c => isBlank(c.toString)).startsWith("{"))) JsonLines else Text

  /** Parses lines of one file; not thread-safe (one per partition). */
  final class Parser(name: String, mode: Mode) {
    private lazy val mapper = new ObjectMapper().enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)

    /** None for a blank line between JSON records; Left for a bad line; Right for a document. */
    def parse(line: Long, body: String): Option[Either[SparkNer.BadLine, SparkNer.Doc]] = mode match {
      case Text                     => Some(Right(SparkNer.Doc(line.toString, line, body)))
      case JsonLines if isBlank(body) => None
      case JsonLines                => Some(json(line, body))
    }

    private def bad(line: Long, msg: String) = Left(SparkNer.BadLine(line, s"$name:$line: $msg"))

    private def json(line: Long, body: String): Either[SparkNer.BadLine, SparkNer.Doc] = {
      val node: JsonNode =
        try mapper.readTree(body)
        catch {
          case e: JsonProcessingException =>
            val col = Option(e.getLocation).map(l => s" at column ${l.getColumnNr}").getOrElse("")
            return bad(line, s"invalid JSON (${e.getOriginalMessage.linesIterator.next()}$col)")
        }
      if (node == null || !node.isObject) return bad(line, s"""expected a JSON object with a "text" field, got ${kind(node)}""")
      val text = node.get("text")
      if (text == null || !text.isTextual) return bad(line, s""""text" must be a string, got ${if (text == null) "nothing" else kind(text)}""")
      val id = node.get("id") match {
        case null                 => line.toString
        case n if n.isTextual     => n.asText()
        case n                    => n.toString
      }
      Right(SparkNer.Doc(id, line, text.asText()))
    }

    private def kind(n: JsonNode): String =
      if (n == null || n.isMissingNode) "nothing" else n.getNodeType.toString.toLowerCase(java.util.Locale.ROOT)
  }
}
