"""Operations of the example server: the discovery document."""
