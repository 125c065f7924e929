// Generates the pyner.v1 protobuf messages and grpc-java stubs from ../proto at build time
// (nothing generated is committed). Published on Maven Central as sbt-protoc_2.12_1.0.
addSbtPlugin("com.thesamet" % "sbt-protoc" % "1.0.8")
