package pyner.sample

import scala.jdk.CollectionConverters._

import com.fasterxml.jackson.databind.{DeserializationFeature, JsonNode, ObjectMapper}
import com.fasterxml.jackson.core.JsonProcessingException
import org.apache.hadoop.fs.Path
import org.apache.spark.sql.{Encoders, SaveMode, SparkSession}
import org.apache.spark.storage.StorageLevel

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
  * by that JVM's concurrent tasks, closed when the JVM shuts down (see [[ExecutorModel]]; the model
  * flags, the session and the per-task inference are shared with StreamingNer, in SparkModel.scala).
  *
  * {{{
  * sbt-sample/sbtw "runMain pyner.sample.SparkNer --artifact ../artifacts/demo --input docs.txt --output out"
  * }}}
  */
object SparkNer {

  final case class Options(model: ModelOptions = ModelOptions(), input: String = "", output: String = "",
                           format: String = "jsonl", onBadLine: String = "report", partitions: Int = 0)

  final case class Doc(id: String, line: Long, text: String)
  final case class BadLine(line: Long, error: String)
  final case class Result(id: String, entities: Seq[Ent])
  final case class Summary(documents: Long, badLineCount: Long, firstBadLines: Seq[BadLine], output: String,
                           badLinesOutput: Option[String], seconds: Double, modelLoads: Seq[ModelLoad] = Nil)

  val Usage: String =
    """usage: SparkNer --artifact DIR --input FILE --output DIR [--format jsonl|parquet] [--aggregation simple]
      |                [--on-bad-line report|fail] [--ship-artifact] [--master local[2]] [--batch-size 256]
      |                [--threads 1] [--partitions N] [--expect-digest sha256:...] [--device cpu|cuda|cuda:N]
      |                [--on-missing-gpu fail|fallback]""".stripMargin

  def parseArgs(args: Array[String]): Options = {
    val o = ModelOptions.parseAll(args, Options(), Usage)(_.model, (o, m) => o.copy(model = m)) { (o, flag, value) =>
      flag match {
        case "--input"       => o.copy(input = value)
        case "--output"      => o.copy(output = value)
        case "--format"      => o.copy(format = value)
        case "--on-bad-line" => o.copy(onBadLine = value)
        case "--partitions"  => o.copy(partitions = Cli.positiveInt(flag, value))
        case other           => throw SampleError.usage(s"unknown option $other\n$Usage")
      }
    }
    for ((name, v) <- Seq("--artifact" -> o.model.artifact, "--input" -> o.input, "--output" -> o.output) if v.isEmpty)
      throw SampleError.usage(s"$name is required\n$Usage")
    if (!Set("jsonl", "parquet")(o.format)) throw SampleError.usage(s"--format must be jsonl or parquet, got '${o.format}'")
    if (!Set("report", "fail")(o.onBadLine)) throw SampleError.usage(s"--on-bad-line must be report or fail, got '${o.onBadLine}'")
    ModelOptions.validate(o.model, Usage)
    o
  }

  def main(args: Array[String]): Unit = sys.exit(Cli.execute("SparkNer") {
    val o = parseArgs(args)
    val spark = SparkApp.session("pyner-spark-ner", o.model.master)
    try {
      val s = run(spark, o)
      println(f"SparkNer: ${s.documents} documents -> ${s.output} (${o.format}) in ${s.seconds}%.1f s " +
        f"(${s.documents / math.max(s.seconds, 1e-9)}%.1f docs/s)")
      println("SparkNer: " + loadsLine(s.modelLoads))
      report(s).foreach(line => System.err.println("SparkNer: " + line))
    } finally spark.stop()
  })

  /** One line on the model loads the executors reported (see [[SparkApp.loadsLine]]). */
  def loadsLine(loads: Seq[ModelLoad]): String = SparkApp.loadsLine(loads)

  /** Refuses a local-cluster master without a Spark home (see [[SparkApp.checkLocalCluster]]). */
  def checkLocalCluster(master: String, sparkHome: Option[String]): Unit = SparkApp.checkLocalCluster(master, sparkHome)

  /** The lines to print about bad input (none when there was none). */
  def report(s: Summary): Seq[String] =
    if (s.badLineCount == 0) Nil
    else (s"${s.badLineCount} bad input line(s) skipped (policy: report), all listed in ${s.badLinesOutput.getOrElse("-")}" +:
      s.firstBadLines.map(b => s"  ${b.error}"))

  /** Runs the job; throws SampleError for bad options, a missing artifact/input, an existing output. */
  def run(spark: SparkSession, o: Options): Summary = {
    import spark.implicits._
    val sc = spark.sparkContext
    // The artifact, its pin and the strategy, on the driver before any work (exit 4 or 2).
    val model = o.model.checked()
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

    // Where executors find the artifact (a shared path, or shipped with the job) and how they run it.
    val task = model.task(sc)
    // Every model load, reported by the executor JVM that made it (executor id, pid, folder).
    val loadsSeen = sc.collectionAccumulator[ModelLoad]("pyner model loads")

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
      // START spark
      val results = parsed.flatMap(_.toOption).mapPartitions { docs =>
        // this executor JVM's one model (loaded by its first task), batches of --batch-size; loads reported once
        task.recognize(docs, loadsSeen.add)(_.text).map { case (doc, ents) => Result(doc.id, ents) }
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
      Summary(documents, badCount, firstBad, o.output, badOutput, seconds, loadsSeen.value.asScala.toSeq.sortBy(_.executorId))
    } finally parsed.unpersist()
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

  private lazy val mapper = new ObjectMapper().enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS) // thread-safe once built

  /** One JSON document, the body of a JSON Lines line or of a Kafka record: Right((its "id" if it has
    * one, its "text")), or Left(what is wrong with it: not JSON, not an object, "text" not a string).
    */
  def document(body: String): Either[String, (Option[String], String)] = {
    val node: JsonNode =
      try mapper.readTree(body)
      catch {
        case e: JsonProcessingException =>
          val col = Option(e.getLocation).map(l => s" at column ${l.getColumnNr}").getOrElse("")
          return Left(s"invalid JSON (${e.getOriginalMessage.linesIterator.next()}$col)")
      }
    if (node == null || !node.isObject) return Left(s"""expected a JSON object with a "text" field, got ${kind(node)}""")
    val text = node.get("text")
    if (text == null || !text.isTextual) return Left(s""""text" must be a string, got ${if (text == null) "nothing" else kind(text)}""")
    val id = node.get("id") match {
      case null                 => None
      case n if n.isTextual     => Some(n.asText())
      case n                    => Some(n.toString)
    }
    Right((id, text.asText()))
  }

  private def kind(n: JsonNode): String =
    if (n == null || n.isMissingNode) "nothing" else n.getNodeType.toString.toLowerCase(java.util.Locale.ROOT)

  /** Parses lines of one file; not thread-safe (one per partition). */
  final class Parser(name: String, mode: Mode) {
    /** None for a blank line between JSON records; Left for a bad line; Right for a document. */
    def parse(line: Long, body: String): Option[Either[SparkNer.BadLine, SparkNer.Doc]] = mode match {
      case Text                     => Some(Right(SparkNer.Doc(line.toString, line, body)))
      case JsonLines if isBlank(body) => None
      case JsonLines                => Some(json(line, body))
    }

    private def json(line: Long, body: String): Either[SparkNer.BadLine, SparkNer.Doc] = document(body) match {
      case Right((id, text)) => Right(SparkNer.Doc(id.getOrElse(line.toString), line, text)) // no "id": the line number
      case Left(msg)         => Left(SparkNer.BadLine(line, s"$name:$line: $msg"))
    }
  }
}
