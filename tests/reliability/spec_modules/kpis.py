def kpis(features, labels, predictions):
    wrong = float(((predictions[:, 0] >= 0.5) != (labels >= 0.5)).sum())
    return {"error_cost": 5.0 * wrong, "errors": wrong}
