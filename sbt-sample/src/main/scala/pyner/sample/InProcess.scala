package pyner.sample

import java.nio.file.{Path, Paths}

import scala.jdk.CollectionConverters._
import scala.util.Using

import dev.pyner.{AggregationStrategy, PynerModel}

/** In-process: the artifact loaded by the pyner JVM library (DJL tokenizer + ONNX Runtime Java) in
  * this JVM. No network, no second process; entities identical to the Python runtime.
  *
  * {{{
  * sbt-sample/sbtw "runMain pyner.sample.InProcess ../artifacts/demo"            # the news sentences below
  * sbt-sample/sbtw "runMain pyner.sample.InProcess ../artifacts/demo 'Some text.'"
  * }}}
  */
object InProcess {

  val NewsSentences: Seq[String] = Seq(
    "Angela Merkel met Emmanuel Macron in Berlin on Tuesday to discuss the European Union budget.",
    "Apple shares rose after Tim Cook spoke at the Steve Jobs Theater in Cupertino, California.",
    "The United Nations said aid convoys had reached Aleppo, Syria, for the first time since March.",
    "Lionel Messi scored twice as Inter Miami beat the New York Red Bulls on Saturday.",
  )

  /** Entities of `texts`, one list per text, in order. */
  def recognize(artifact: Path, texts: Seq[String],
                aggregation: AggregationStrategy = AggregationStrategy.SIMPLE, threads: Int = 2): Seq[Seq[Ent]] = {
    Cli.requireArtifact(artifact)
    // START in-process
    Using.resource(PynerModel.builder().setArtifact(artifact).optThreads(threads).build()) { model =>
      val entities = model.predict(texts.asJava, aggregation) // java.util.List[java.util.List[Entity]]
      entities.asScala.toSeq.map(_.asScala.toSeq.map(Ent.of))
    }
    // END in-process
  }

  def main(args: Array[String]): Unit = sys.exit(Cli.execute("InProcess") {
    if (args.isEmpty) throw SampleError.usage("usage: InProcess ARTIFACT_DIR [TEXT ...]")
    val texts = if (args.length > 1) args.toSeq.tail else NewsSentences
    val results = recognize(Paths.get(args(0)), texts)
    for ((text, ents) <- texts.zip(results)) {
      println(text)
      if (ents.isEmpty) println("  (no entities)") else ents.foreach(e => println("  " + Ent.show(e)))
    }
  })
}
