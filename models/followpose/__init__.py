"""Follow-Your-Pose: pose encoder + inflated 3D UNet (installed as `fypbench.models.followpose`)."""
