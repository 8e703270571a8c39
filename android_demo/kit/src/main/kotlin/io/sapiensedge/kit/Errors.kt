package io.sapiensedge.kit

/**
 * Typed errors of the kit, named after src/sapiens_edge/errors.py where a Python twin exists.
 * Every one is a user mistake (a bad file, image or call) and says what to do; bugs stay plain exceptions.
 */
sealed class SapiensEdgeException(message: String) : RuntimeException(message)

/** An artifact folder that cannot be used (Python: ArtifactError). */
sealed class ArtifactError(message: String) : SapiensEdgeException(message)

/** A manifest that is not valid JSON, lacks a field, or was edited since export. */
class ManifestError(message: String) : ArtifactError(message)

/** A manifest schema this kit does not know (Python: ManifestVersionError). */
class ManifestVersionError(message: String) : ArtifactError(message)

/** A file the manifest lists (the model file included) is not in the folder. */
class ModelFileMissingError(message: String) : ArtifactError(message)

/** A file's sha256 differs from the manifest's. */
class ChecksumMismatchError(message: String) : ArtifactError(message)

/** The artifact was exported for another task than the one the caller asked for. */
class WrongTaskError(message: String) : ArtifactError(message)

/** A model output whose shape contradicts the manifest (a backend or export bug, or a swapped file). */
class OutputShapeError(message: String) : ArtifactError(message)

/** An image that is empty or whose pixel array does not match its size (Python: ImageError). */
class ImageError(message: String) : SapiensEdgeException(message)

/** A tensor or box array of the wrong shape given to the kit (Python: InputShapeError). */
class InputShapeError(message: String) : SapiensEdgeException(message)

/** A backend option or engine this build or device cannot use (Python: OptionError). */
class OptionError(message: String) : SapiensEdgeException(message)
