package pyner.sample

import java.nio.charset.StandardCharsets.UTF_8
import java.nio.file.{Files, Path, Paths}

import scala.jdk.CollectionConverters._

import org.apache.spark.sql.SparkSession
import org.scalatest.BeforeAndAfterAll
import org.scalatest.funsuite.AnyFunSuite

import TestSupport._

/** SparkNer on Spark's local-cluster master: two workers, each executor a separate JVM started from
  * SPARK_HOME/jars (build.sbt's sparkHome task), the artifact shipped with --ship-artifact. Oracles:
  * `pyner predict` for the output, and the executors themselves for the model loads (what they
  * report to the driver, and what each wrote to its own stderr file in the worker's folder).
  */
class ClusterSparkNerSpec extends AnyFunSuite with BeforeAndAfterAll {

  private val executors = 2
  private var spark: SparkSession = _
  private lazy val art = artifact("bert-fp32")
  private lazy val sparkHome: Path = {
    val home = sys.env.get("SPARK_HOME").map(Paths.get(_)).getOrElse(fail("SPARK_HOME is not set (build.sbt sets it for the tests)"))
    assert(Files.isDirectory(home.resolve("jars")), s"$home/jars: not a folder (build.sbt's sparkHome task writes it)")
    home
  }

  override def beforeAll(): Unit = {
    val classes = sys.props.getOrElse("pyner.executorClassPath", fail("pyner.executorClassPath is not set"))
    SparkNer.checkLocalCluster(s"local-cluster[$executors,1,1024]", Some(sparkHome.toString))
    spark = SparkSession.builder().master(s"local-cluster[$executors,1,1024]").appName("pyner-spark-cluster-test")
      .config("spark.ui.enabled", "false")
      .config("spark.executor.memory", "768m")
      .config("spark.executor.extraClassPath", classes)
      .config("spark.executorEnv.DJL_OFFLINE", "true")
      .config("spark.executorEnv.OPT_OUT_TRACKING", "true")
      .config("spark.sql.shuffle.partitions", "2")
      .config("spark.driver.host", "127.0.0.1")
      .config("spark.driver.bindAddress", "127.0.0.1")
      .getOrCreate()
    // Both executors up before any job: otherwise the first one to register may run every task.
    val until = System.nanoTime() + 180L * 1000000000L
    while (registered < executors) {
      if (System.nanoTime() > until) fail(s"only $registered of $executors executors registered in 180 s; see $sparkHome/work")
      Thread.sleep(200)
    }
  }

  override def afterAll(): Unit = if (spark != null) {
    val app = sparkHome.resolve("work").resolve(spark.sparkContext.applicationId)
    spark.stop()
    // the executors' folders (logs read above, an unpacked copy of the artifact each); the sparkHome task clears the rest
    try deleteRecursively(app) catch { case _: java.io.IOException => () }
  }

  /** How many executors have registered (the status tracker lists the driver too). */
  private def registered: Int = spark.sparkContext.statusTracker.getExecutorInfos.length - 1

  /** "ExecutorModel: loaded" lines in each executor's own stderr file (worker folder SPARK_HOME/work/APP/EXEC/stderr). */
  private def loadLinesByExecutor(appId: String): Map[String, Seq[String]] = {
    val app = sparkHome.resolve("work").resolve(appId)
    assert(Files.isDirectory(app), s"$app: no worker folder for this application")
    Files.list(app).iterator().asScala.toSeq.filter(d => Files.isRegularFile(d.resolve("stderr"))).map { d =>
      d.getFileName.toString -> Files.readAllLines(d.resolve("stderr"), UTF_8).asScala.toSeq.filter(_.startsWith("ExecutorModel: loaded "))
    }.toMap
  }

  test(s"local-cluster[$executors,1,1024], --ship-artifact: output equals `pyner predict`; one model load per executor JVM, from SparkFiles") {
    val sc = spark.sparkContext
    val dir = tempDir("spark-cluster")
    val sentences = wikigoldSentences(300)
    val input = Files.write(dir.resolve("wikigold.txt"), sentences.asJava, UTF_8)
    val out = dir.resolve("out")
    val driverLoads = ExecutorModel.loads
    val summary = SparkNer.run(spark, SparkNer.parseArgs(Array(
      "--artifact", art.toString, "--input", input.toString, "--output", out.toString,
      "--ship-artifact", "--partitions", "6", "--batch-size", "16")))
    assert(summary.documents == sentences.size)

    // Shipped as one archive, listed by the driver's context; no folder was added with addFile.
    val archive = ShipArtifact.archiveName(art)
    assert(sc.listArchives().exists(_.endsWith("/" + archive)), s"$archive not in ${sc.listArchives()}")
    assert(!sc.listFiles().exists(_.contains(art.getFileName.toString)), sc.listFiles().toString)

    // The model loads, as the executors reported them: one per executor JVM, none in the driver.
    val loads = summary.modelLoads
    info("executors reported: " + SparkNer.loadsLine(loads))
    assert(ExecutorModel.loads == driverLoads, "the driver JVM loaded a model")
    assert(registered == executors)
    assert(loads.size == executors, s"expected exactly one load in each of $executors executors: $loads")
    assert(loads.map(_.pid).distinct.size == executors, s"the executors are not separate JVMs: $loads")
    assert(!loads.map(_.pid).contains(ProcessHandle.current().pid()), s"a load ran in the driver JVM: $loads")
    for (l <- loads) {
      assert(l.loadInJvm == 1, s"executor ${l.executorId}: load #${l.loadInJvm} in its JVM")
      // unpacked by Spark into that executor's SparkFiles folder, under the archive's name
      assert(Paths.get(l.artifactDir).toAbsolutePath.normalize == Paths.get(l.sparkFilesRoot).resolve(archive), l.toString)
      // which, on a standalone worker, is the executor's own folder under the worker's
      assert(Paths.get(l.sparkFilesRoot) == sparkHome.resolve("work").resolve(sc.applicationId).resolve(l.executorId).toAbsolutePath.normalize, l.toString)
      assert(!Paths.get(l.artifactDir).startsWith(art), l.toString)
    }

    // Independently: each executor's own stderr file holds exactly one load line, with its pid.
    val logged = loadLinesByExecutor(sc.applicationId)
    assert(logged.keySet == loads.map(_.executorId).toSet, s"executor folders ${logged.keySet}, loads reported $loads")
    for (l <- loads) {
      val lines = logged(l.executorId)
      assert(lines.size == 1, s"executor ${l.executorId} logged ${lines.size} loads: $lines")
      assert(lines.head.contains(s"(executor ${l.executorId}, pid ${l.pid}, load #1 in this JVM)"), lines.head)
    }

    // The output, against the Python runtime on the same file.
    val python = pynerPredict(art, input)
    val (entities, identical) = compareWithPython(python, readSparkOutput(spark, out, "jsonl"), art)
    assert(entities > 0)
    info(s"parity (local-cluster, $executors executor JVMs): ${sentences.size}/${python.size} documents, " +
      s"$entities entities equal, $identical with bit-identical scores")
  }

  test("the archive: every file of the folder, STORED, byte-identical; named by folder and digest") {
    val zip = tempDir("spark-pack").resolve("a.zip")
    ShipArtifact.pack(art, zip)
    val zf = new java.util.zip.ZipFile(zip.toFile)
    try {
      val entries = zf.entries().asScala.toSeq
      val files = Files.list(art).iterator().asScala.filter(f => Files.isRegularFile(f)).map(_.getFileName.toString).toSet
      assert(entries.map(_.getName).toSet == files)
      for (e <- entries) {
        assert(e.getMethod == java.util.zip.ZipEntry.STORED, e.getName)
        val in = zf.getInputStream(e)
        try assert(java.util.Arrays.equals(in.readAllBytes(), Files.readAllBytes(art.resolve(e.getName))), e.getName)
        finally in.close()
      }
    } finally zf.close()
    assert(ShipArtifact.archiveName(art).matches("bert-fp32-[0-9a-f]{12}\\.zip"), ShipArtifact.archiveName(art))
  }

  test("local-cluster without a Spark home: refused with one line naming SPARK_HOME") {
    val unset = intercept[SampleError](SparkNer.checkLocalCluster("local-cluster[2,1,2048]", None))
    assert(unset.exitCode == 2 && unset.getMessage.startsWith(
      "--master local-cluster[2,1,2048] launches executor JVMs from SPARK_HOME/jars, and SPARK_HOME is not set"), unset.getMessage)
    val empty = tempDir("no-spark-home")
    val missing = intercept[SampleError](SparkNer.checkLocalCluster("local-cluster[1,1,1024]", Some(empty.toString)))
    assert(missing.getMessage.contains(s"and $empty/jars is not a folder"), missing.getMessage)
    SparkNer.checkLocalCluster("local[2]", None) // other masters need none
  }
}
