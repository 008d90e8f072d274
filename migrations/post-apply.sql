-- Runs after every `yoyo apply`; holds only what is safe to repeat.
-- A running PostgREST reloads its schema cache and sees new api objects.
NOTIFY pgrst, 'reload schema';
