package sql_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// plantRegnamespaceEquals has role create, in schema public, an = taking
// exactly (oid, regnamespace) that notes who ran it in public.ran.
// pg_catalog has no such operator (oid = regnamespace reaches oideq only
// through a cast), so Postgres picks it for an unqualified
// "x.oid_column = 'pg_catalog'::regnamespace".
func (b *testBundle) plantRegnamespaceEquals(t *testing.T, role string) {
	t.Helper()
	b.exec(t, `CREATE TABLE public.ran (who text); GRANT INSERT ON public.ran TO PUBLIC`)
	b.exec(t, "SET ROLE "+role)
	b.exec(t, `CREATE FUNCTION public.oid_ns_eq(oid, regnamespace) RETURNS boolean LANGUAGE plpgsql AS $$
		BEGIN
			INSERT INTO public.ran VALUES (current_user);
			RETURN $1 OPERATOR(pg_catalog.=) $2::oid;
		END $$;
		CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = regnamespace, FUNCTION = public.oid_ns_eq)`)
	b.exec(t, "RESET ROLE")
}

// The check that refuses an unsafe search_path compares
// pg_operator.oprnamespace and pg_proc.pronamespace with
// 'pg_catalog'::regnamespace using an unqualified =, under the very
// search_path it inspects: an operator planted there runs as pgforce's
// owner while the check looks for it (at the worker's start, and in
// resolve, called by an operator's role).
func TestTheSearchPathCheckItselfNeverRunsAnOperatorPlantedInThePath(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mapAccount(t, "read_write")
	app := b.applicationRole(t)
	b.plantRegnamespaceEquals(t, app)

	// As the worker does at start (its session's search_path).
	var unsafe []string
	b.scalar(t, &unsafe, `SELECT pgforce._unsafe_search_path()`)
	require.NotEmpty(t, unsafe, "the path is unsafe and said so")
	var who []string
	b.scalar(t, &who, `SELECT coalesce(array_agg(DISTINCT who), '{}') FROM public.ran`)
	require.Empty(t, who, "the planted operator ran as %v while the search_path was checked", who)
}

// An operator planted on (oid, regnamespace) also answers the check's own
// "is there a pg_catalog operator of that name" with false: the check then
// lists none of the role's operators, and once CREATE on public is taken
// away (what the refusal's hint asks) resolve goes ahead and runs the
// role's = on varchars, in the application's trigger, as pgforce's owner.
func TestResolveIsNotFooledByAnOperatorThatHidesThePlantedOnes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	errID := b.conflictOverName(t)
	app := b.applicationRole(t)
	b.plantEquals(t, app) // public.= (varchar, varchar), noting who ran it in public.ran
	b.exec(t, "SET ROLE "+app)
	b.exec(t, `CREATE FUNCTION public.oid_ns_eq(oid, regnamespace) RETURNS boolean LANGUAGE sql AS 'SELECT false';
		CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = regnamespace, FUNCTION = public.oid_ns_eq)`)
	b.exec(t, "RESET ROLE")
	b.exec(t, `CREATE FUNCTION public.audit_account() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF NEW.name = 'S' THEN NULL; END IF; RETURN NULL; END $$;
		CREATE TRIGGER audit_account AFTER UPDATE ON salesforce.account FOR EACH ROW EXECUTE FUNCTION public.audit_account()`)
	b.exec(t, "REVOKE CREATE ON SCHEMA public FROM "+app)
	op := b.role(t, "resolver", `GRANT USAGE ON SCHEMA pgforce TO %[1]s; GRANT EXECUTE ON FUNCTION pgforce.resolve(bigint, text) TO %[1]s`)

	var unsafe []string
	b.scalar(t, &unsafe, `SELECT pgforce._unsafe_search_path()`)
	b.exec(t, "SET ROLE "+op)
	_, err := b.conn.Exec(context.Background(), `SELECT pgforce.resolve($1, 'salesforce')`, errID)
	b.exec(t, "RESET ROLE")
	var who []string
	b.scalar(t, &who, `SELECT coalesce(array_agg(DISTINCT who), '{}') FROM public.ran`)
	require.Empty(t, who, "the planted varchar = ran as %v in resolve (the check said %v, resolve returned %v)", who, unsafe, err)
	require.Error(t, err, "resolve went ahead with operators of %s on its search_path", app)
}
