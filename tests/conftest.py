import os

from hypothesis import HealthCheck, settings

# Hypothesis profiles: "ci" is bounded and derandomized (same examples every run);
# "soak" is the long search, selected with HYPOTHESIS_PROFILE=soak (make soak).
settings.register_profile(
    "ci",
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile(
    "soak",
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
