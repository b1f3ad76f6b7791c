-- Shared by the benchmarks' setup files (\ir common.sql).

-- time_ms(sql): milliseconds one statement takes.
CREATE FUNCTION time_ms(q text) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz;
BEGIN
	t0 := clock_timestamp();
	EXECUTE q;
	RETURN extract(epoch FROM clock_timestamp() - t0) * 1000;
END $$;
