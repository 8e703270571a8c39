// The kit's Android-side build: the same sources as kit/pom.xml (pure Kotlin, no android.* imports), a plain
// JVM library the app depends on. ai.onnxruntime comes from the app (onnxruntime-android); compileOnly here so
// the desktop jar is not packed into the APK.
plugins { id("org.jetbrains.kotlin.jvm") }

kotlin { jvmToolchain(17) }

dependencies {
    compileOnly("com.microsoft.onnxruntime:onnxruntime:1.23.2")
    testImplementation("com.microsoft.onnxruntime:onnxruntime:1.23.2")
    testImplementation("org.junit.jupiter:junit-jupiter:5.14.1")
}

tasks.test {
    useJUnitPlatform()
    // The golden/end-to-end folders come from tests/android_kit/test_kotlin_kit.py (see kit/pom.xml).
    systemProperty("sapiens.golden", System.getProperty("sapiens.golden") ?: "")
    systemProperty("sapiens.artifacts", System.getProperty("sapiens.artifacts") ?: "")
}
