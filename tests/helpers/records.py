"""One valid demo record, shared by the request-validation tests."""

GOOD = {
    "age": 40,
    "income_k": 50.5,
    "tenure_months": 10,
    "num_purchases": 3,
    "avg_basket": 20,
    "days_since_last": 4,
    "support_calls": 1,
    "discount_rate": 0.1,
    "session_minutes": 10,
    "region": "north",
    "plan": "basic",
    "channel": "web",
}
