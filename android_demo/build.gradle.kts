// Versions pinned here and in gradle/libs.versions.toml; keep kotlin and onnxruntime in step with kit/pom.xml.
plugins {
    id("com.android.application") version "8.7.3" apply false
    id("org.jetbrains.kotlin.android") version "2.2.21" apply false
    id("org.jetbrains.kotlin.jvm") version "2.2.21" apply false
}
