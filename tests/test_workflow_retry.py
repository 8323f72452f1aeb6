"""Retry policies: validation that names the field, exact whole-millisecond intervals
(sub-second ones too), the attempt limit, non-retryable failures, and the properties the
engine relies on: intervals never shrink, never pass the maximum, attempts stop."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from raftflow.statemachine.workflow import MAX_DURATION_MS, DefinitionError, RetryPolicy, interval_ms, should_retry


def test_sub_second_intervals_are_exact_milliseconds():
    policy = RetryPolicy(initial_interval=0.2, backoff_coefficient=2.0, maximum_interval=1.0)
    assert [interval_ms(policy, attempt) for attempt in range(1, 6)] == [200, 400, 800, 1000, 1000]


def test_defaults_are_temporals():
    policy = RetryPolicy()
    assert (policy.initial_interval_ms, policy.backoff_coefficient, policy.maximum_interval_ms) == (1000, 2.0, 100_000)
    assert policy.maximum_attempts == 0 and policy.non_retryable_error_types == ()
    assert [interval_ms(policy, a) for a in (1, 2, 7, 8, 50)] == [1000, 2000, 64_000, 100_000, 100_000]


def test_fractional_coefficient_rounds_down_exactly_not_by_float_pow():
    # 1000 × 1.1^k exactly: 1100, 1210, 1331, 1464.1 -> 1464, 1610.51 -> 1610
    policy = RetryPolicy(initial_interval=1, backoff_coefficient=1.1, maximum_interval=10)
    assert [interval_ms(policy, a) for a in range(1, 7)] == [1000, 1100, 1210, 1331, 1464, 1610]


def test_float_noise_below_a_microsecond_is_normalized_away():
    assert RetryPolicy(initial_interval=0.1 * 3) == RetryPolicy(initial_interval=0.3)
    assert RetryPolicy(initial_interval=0.3).initial_interval_ms == 300


def test_default_maximum_is_100_times_initial_and_explicit_one_compares_equal():
    assert RetryPolicy(initial_interval=0.5) == RetryPolicy(initial_interval=0.5, maximum_interval=50)


def test_large_attempt_numbers_are_cheap_and_capped():
    policy = RetryPolicy(backoff_coefficient=1.001, maximum_interval=MAX_DURATION_MS / 1000)
    assert interval_ms(policy, 10**12) == MAX_DURATION_MS


def test_maximum_attempts_counts_the_first_attempt():
    policy = RetryPolicy(maximum_attempts=3)
    assert [should_retry(policy, a, "Timeout", True) for a in (1, 2, 3, 4)] == [True, True, False, False]


def test_zero_maximum_attempts_means_unlimited():
    assert should_retry(RetryPolicy(), 1_000_000, "Timeout", True)


def test_listed_error_type_and_non_retryable_flag_stop_retries():
    policy = RetryPolicy(non_retryable_error_types=["CardDeclined"])
    assert not should_retry(policy, 1, "CardDeclined", True)
    assert should_retry(policy, 1, "carddeclined", True)  # an exact match, as in Temporal
    assert not should_retry(policy, 1, "Timeout", False)
    assert policy.non_retryable_error_types == ("CardDeclined",)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"initial_interval": -1.0}, "retry.initial_interval=-1.0 must be > 0"),
        ({"initial_interval": 0}, "retry.initial_interval=0 must be > 0"),
        ({"initial_interval": 0.0005}, "retry.initial_interval=0.0005 must be a whole number of milliseconds"),
        ({"initial_interval": "1s"}, "retry.initial_interval='1s' must be a number"),
        ({"initial_interval": True}, "retry.initial_interval=True must be a number"),
        ({"backoff_coefficient": 0.5}, "retry.backoff_coefficient=0.5 must be >= 1"),
        ({"backoff_coefficient": 1.0001}, "retry.backoff_coefficient=1.0001 must have at most 3 decimal places"),
        ({"maximum_interval": 0.5}, "retry.maximum_interval=0.5 must be >= retry.initial_interval=1.0"),
        ({"maximum_attempts": -1}, "retry.maximum_attempts=-1 must be an integer from 0"),
        ({"maximum_attempts": 2.0}, "retry.maximum_attempts=2.0 must be an integer"),
        ({"non_retryable_error_types": "Boom"}, "retry.non_retryable_error_types='Boom' must be a list of strings"),
        ({"non_retryable_error_types": ["ok", ""]}, "retry.non_retryable_error_types[1]='' must be non-empty"),
    ],
)
def test_bad_policies_name_the_field_and_rule(fields, message):
    with pytest.raises(DefinitionError) as caught:
        RetryPolicy(**fields)
    assert str(caught.value).startswith(message), str(caught.value)
    assert isinstance(caught.value, ValueError)


policies = st.builds(
    RetryPolicy,
    initial_interval=st.integers(1, 10_000).map(lambda ms: ms / 1000),
    backoff_coefficient=st.integers(1000, 5000).map(lambda thousandths: thousandths / 1000),
    maximum_interval=st.none() | st.integers(10_000, 1_000_000).map(lambda ms: ms / 1000),
    maximum_attempts=st.integers(0, 50),
)


@given(policy=policies, attempts=st.integers(1, 200))
def test_intervals_never_shrink_and_never_pass_the_maximum(policy, attempts):
    intervals = [interval_ms(policy, a) for a in range(1, attempts + 1)]
    assert intervals[0] == policy.initial_interval_ms
    assert all(earlier <= later for earlier, later in zip(intervals, intervals[1:])), intervals
    assert max(intervals) <= policy.maximum_interval_ms


@given(policy=policies, error_type=st.sampled_from(["Timeout", "Crash"]))
def test_attempts_never_exceed_maximum_attempts(policy, error_type):
    attempt = 1
    while should_retry(policy, attempt, error_type, True) and attempt < 500:
        attempt += 1
    if policy.maximum_attempts:
        assert attempt == policy.maximum_attempts
    else:
        assert attempt == 500  # unlimited: only the loop's own bound stopped it
