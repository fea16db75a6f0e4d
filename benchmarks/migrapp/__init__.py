"""The app whose migration history the migrations benchmark applies to every schema."""
