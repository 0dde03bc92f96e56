"""The stream path: versioned events on Kafka topics, the workers that apply them (features, articles, training)."""
