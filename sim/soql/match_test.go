package soql

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestWhereSelectsRowsAsSalesforceDoes(t *testing.T) {
	t.Parallel()
	all := []string{"Acme", "Globex", "Initech_Labs", "Umbrella 100%"}
	cases := []struct {
		name  string
		where string
		want  []string
	}{
		// text
		{"EqualsIgnoresCase", "Name = 'ACME'", []string{"Acme"}},
		{"NotEqualsIncludesNulls", "Industry != 'Energy'", []string{"Globex", "Initech_Labs", "Umbrella 100%"}},
		{"AngleBracketsMeanNotEquals", "Industry <> 'Energy'", []string{"Globex", "Initech_Labs", "Umbrella 100%"}},
		{"EqualsNullMatchesMissingAndEmptyText", "Industry = null", []string{"Initech_Labs", "Umbrella 100%"}},
		{"NotEqualsNullMatchesSetText", "Industry != null", []string{"Acme", "Globex"}},
		{"EmptyStringLiteralMeansNull", "Industry = ''", []string{"Initech_Labs", "Umbrella 100%"}},
		{"TextOrdersCaseInsensitively", "Name > 'b'", []string{"Globex", "Initech_Labs", "Umbrella 100%"}},
		{"TextLessOrEqual", "Name <= 'globex'", []string{"Acme", "Globex"}},
		{"TextGreaterOrEqual", "Name >= 'INITECH_LABS'", []string{"Initech_Labs", "Umbrella 100%"}},
		{"TextLessThan", "Name < 'Globex'", []string{"Acme"}},
		{"InListIgnoresCase", "Industry IN ('energy', 'MEDIA')", []string{"Acme", "Globex"}},
		{"NotInIncludesNulls", "Industry NOT IN ('Energy')", []string{"Globex", "Initech_Labs", "Umbrella 100%"}},
		{"InWithNullMatchesNulls", "Industry IN (null, 'Media')", []string{"Globex", "Initech_Labs", "Umbrella 100%"}},
		{"LargeInListUsesSameSemantics", "Name IN ('a','b','c','d','e','f','g','h','ACME','globex','kiosk')", []string{"Acme", "Globex"}},
		{"LargeInListFoldsLongS", "Name IN ('a','b','c','d','e','f','g','h','\u212Aiosk','ACME','INITECH_LAB\u017F')", []string{"Acme", "Initech_Labs"}},
		{"LargeInListKeepsAccents", "Name IN ('a','b','c','d','e','f','g','h','i','j','ACM\u00c9','globex')", []string{"Globex"}},
		{"EscapedQuoteInString", `Name = 'Acme\'s'`, []string{}},
		// LIKE
		{"LikePercentMatchesAnyRun", "Name LIKE 'a%'", []string{"Acme"}},
		{"LikeIsCaseInsensitive", "Name LIKE '%LAB%'", []string{"Initech_Labs"}},
		{"LikeUnderscoreMatchesOneCharacter", "Name LIKE 'Acm_'", []string{"Acme"}},
		{"LikeUnderscoreNeedsExactlyOne", "Name LIKE 'Acme_'", []string{}},
		{"LikeEscapedUnderscoreIsLiteral", `Name LIKE '%h\_L%'`, []string{"Initech_Labs"}},
		{"LikeEscapedPercentIsLiteral", `Name LIKE '%100\%'`, []string{"Umbrella 100%"}},
		{"LikeNeverMatchesNull", "Industry LIKE '%'", []string{"Acme", "Globex"}},
		{"NotLikeIncludesNulls", "NOT Industry LIKE 'E%'", []string{"Globex", "Initech_Labs", "Umbrella 100%"}},
		// numbers, compared exactly
		{"NumberEqualsAcrossNotations", "AnnualRevenue = 1000000", []string{"Globex"}},
		{"NumberComparesDecimalsExactly", "AnnualRevenue > 1000000.49", []string{"Acme"}},
		{"NumberNegative", "AnnualRevenue < 0", []string{"Initech_Labs"}},
		{"NumberLessOrEqual", "NumberOfEmployees <= 8", []string{"Globex", "Initech_Labs"}},
		{"NumberGreaterOrEqualExponent", "NumberOfEmployees >= 1.2e2", []string{"Acme"}},
		{"NumberIn", "NumberOfEmployees IN (0, 120.0)", []string{"Acme", "Initech_Labs"}},
		{"NumberNullComparisonsMatchNothing", "NumberOfEmployees < 1000000", []string{"Acme", "Globex", "Initech_Labs"}},
		// booleans
		{"BooleanTrue", "Active__c = TRUE", []string{"Acme", "Initech_Labs"}},
		{"BooleanFalse", "Active__c = false", []string{"Globex"}},
		{"BooleanNotTrueIncludesNull", "Active__c != true", []string{"Globex", "Umbrella 100%"}},
		// dates, datetimes, times
		{"DateEquals", "LastActivityDate = 2024-03-12", []string{"Acme"}},
		{"DateBefore", "LastActivityDate < 2024-03-12", []string{"Globex"}},
		{"DateTimeAfterInstant", "CreatedDate > 2024-03-13T08:59:59Z", []string{"Acme", "Umbrella 100%"}},
		{"DateTimeWithOffset", "CreatedDate = 2024-03-13T10:00:00+01:00", []string{"Acme"}},
		{"DateTimeWithNegativeOffset", "CreatedDate = 2024-03-13T04:00:00-05:00", []string{"Acme"}},
		{"DateTimeWithCompactOffset", "CreatedDate = 2024-03-13T04:00:00-0500", []string{"Acme"}},
		{"DateTimeFractionalSeconds", "CreatedDate = 2023-12-31T23:59:59.999Z", []string{"Initech_Labs"}},
		{"DateTimeFractionalSecondsDiffer", "CreatedDate < 2023-12-31T23:59:59.998Z", []string{}},
		{"TimeOfDay", "OpensAt__c < 09:00:00.000Z", []string{"Acme"}},
		// relative date literals against now = Wed 2024-03-13 15:30 UTC
		{"TodayOnDateTime", "CreatedDate = TODAY", []string{"Acme"}},
		{"TodayOnDate", "LastActivityDate = TODAY", []string{"Umbrella 100%"}},
		{"YesterdayOnDate", "LastActivityDate = YESTERDAY", []string{"Acme"}},
		{"TomorrowOnDateTime", "CreatedDate = TOMORROW", []string{"Umbrella 100%"}},
		{"AfterTodayMeansFromTomorrow", "CreatedDate > TODAY", []string{"Umbrella 100%"}},
		{"BeforeTodayMeansBeforeMidnight", "CreatedDate < TODAY", []string{"Globex", "Initech_Labs"}},
		{"OnOrAfterToday", "CreatedDate >= TODAY", []string{"Acme", "Umbrella 100%"}},
		{"OnOrBeforeToday", "CreatedDate <= TODAY", []string{"Acme", "Globex", "Initech_Labs"}},
		{"NotTodayIncludesNulls", "LastActivityDate != TODAY", []string{"Acme", "Globex", "Initech_Labs"}},
		{"LastNDaysIncludesToday", "LastActivityDate = LAST_N_DAYS:1", []string{"Acme", "Umbrella 100%"}},
		{"LastNDaysReachesBack", "CreatedDate = LAST_N_DAYS:12", []string{"Acme", "Globex"}},
		{"LastNDaysExcludesOneDayTooOld", "CreatedDate = LAST_N_DAYS:11", []string{"Acme"}},
		{"NextNDaysStartsTomorrow", "CreatedDate = NEXT_N_DAYS:1", []string{"Umbrella 100%"}},
		{"NDaysAgoIsOneDay", "LastActivityDate = N_DAYS_AGO:22", []string{"Globex"}},
		{"ThisWeekStartsSunday", "CreatedDate = THIS_WEEK", []string{"Acme", "Umbrella 100%"}},
		{"LastWeek", "CreatedDate = LAST_WEEK", []string{}},
		{"ThisMonth", "CreatedDate = THIS_MONTH", []string{"Acme", "Globex", "Umbrella 100%"}},
		{"LastMonth", "LastActivityDate = LAST_MONTH", []string{"Globex"}},
		{"ThisYear", "CreatedDate = THIS_YEAR", []string{"Acme", "Globex", "Umbrella 100%"}},
		{"BeforeThisYear", "CreatedDate < THIS_YEAR", []string{"Initech_Labs"}},
		{"RelativeInList", "LastActivityDate IN (TODAY, LAST_MONTH)", []string{"Globex", "Umbrella 100%"}},
		// multipicklists
		{"IncludesAnyEntry", "Tags__c INCLUDES ('Silver', 'Partner')", []string{"Acme", "Globex"}},
		{"IncludesSemicolonMeansAll", "Tags__c INCLUDES ('Gold;Partner')", []string{"Acme"}},
		{"IncludesIgnoresCase", "Tags__c INCLUDES ('gold')", []string{"Acme", "Initech_Labs"}},
		{"ExcludesKeepsRowsWithoutAny", "Tags__c EXCLUDES ('Gold')", []string{"Globex", "Umbrella 100%"}},
		// ids: a 15-character id matches its 18-character form
		{"IdEqualsEighteen", "Id = '001000000000002AAA'", []string{"Globex"}},
		{"IdEqualsFifteen", "Id = '001000000000002'", []string{"Globex"}},
		{"IdIsCaseSensitive", "Id = '001000000000002aaa'", []string{"Globex"}},
		{"IdInLargeList", "Id IN ('001000000000001','001000000000009AAA','001000000000008AAA','001000000000007AAA','001000000000006AAA','001000000000005AAA','001000000000010AAA','001000000000004AAA')", []string{"Acme", "Umbrella 100%"}},
		{"ReferenceEqualsNull", "ParentId = null", []string{"Acme", "Initech_Labs", "Umbrella 100%"}},
		// parent paths
		{"ParentField", "Owner.Name = 'alice'", []string{"Acme"}},
		{"GrandparentField", "Owner.Manager.Name = 'Boss'", []string{"Acme"}},
		{"MissingParentIsNull", "Owner.Name = null", []string{"Initech_Labs", "Umbrella 100%"}},
		{"SelfRelationship", "Parent.Name LIKE 'Ac%'", []string{"Globex"}},
		{"ObjectNamePrefix", "Account.Name = 'Acme'", []string{"Acme"}},
		// logic
		{"AndBindsTighterThanOr", "Name = 'Acme' OR Name = 'Globex' AND Active__c = true", []string{"Acme"}},
		{"ParenthesesGroup", "(Name = 'Acme' OR Name = 'Globex') AND Active__c = true", []string{"Acme"}},
		{"NotNegatesGroup", "NOT (Name = 'Acme' OR Name = 'Globex')", []string{"Initech_Labs", "Umbrella 100%"}},
		{"NestedNot", "NOT NOT Name = 'Acme'", []string{"Acme"}},
		{"KeywordsAnyCase", "name = 'acme' or NAME = 'globex'", []string{"Acme", "Globex"}},
		{"ChainOfAnds", "Active__c = true AND AnnualRevenue > 0 AND Tags__c INCLUDES ('Gold')", []string{"Acme"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, matchingNames(t, "SELECT Id FROM Account WHERE "+tc.where))
		})
	}
	t.Run("NoWhereMatchesEverything", func(t *testing.T) {
		require.Equal(t, all, matchingNames(t, "SELECT Id FROM Account"))
	})
}

func TestRelativeDatesFollowNowAcrossBoundaries(t *testing.T) {
	t.Parallel()
	q := bind(t, "SELECT Id FROM Account WHERE CreatedDate = THIS_MONTH")
	r := &rec{vals: map[string]any{"CreatedDate": instant("2024-01-31T23:00:00Z")}}
	require.True(t, q.Match(r, time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)))
	require.False(t, q.Match(r, time.Date(2024, 2, 1, 0, 0, 0, 0, time.UTC)))
	// now in another zone is read in UTC: 2024-02-01 01:00+02:00 is still January in UTC.
	require.True(t, q.Match(r, time.Date(2024, 2, 1, 1, 0, 0, 0, time.FixedZone("x", 2*3600))))

	lastMonth := bind(t, "SELECT Id FROM Account WHERE LastActivityDate = LAST_MONTH")
	dec := &rec{vals: map[string]any{"LastActivityDate": day("2023-12-15")}}
	require.True(t, lastMonth.Match(dec, time.Date(2024, 1, 10, 0, 0, 0, 0, time.UTC)), "LAST_MONTH crosses the year")
}

func TestWeeksRunSundayToSaturday(t *testing.T) {
	t.Parallel()
	thisWeek := bind(t, "SELECT Id FROM Account WHERE CreatedDate = THIS_WEEK")
	lastWeek := bind(t, "SELECT Id FROM Account WHERE CreatedDate = LAST_WEEK")
	sunday := &rec{vals: map[string]any{"CreatedDate": instant("2024-03-10T00:00:00Z")}}
	saturday := &rec{vals: map[string]any{"CreatedDate": instant("2024-03-09T23:59:59Z")}}
	for _, now := range []time.Time{
		time.Date(2024, 3, 10, 0, 0, 0, 0, time.UTC),    // Sunday itself
		time.Date(2024, 3, 16, 23, 59, 59, 0, time.UTC), // the following Saturday
	} {
		require.True(t, thisWeek.Match(sunday, now), now)
		require.False(t, thisWeek.Match(saturday, now), now)
		require.True(t, lastWeek.Match(saturday, now), now)
		require.False(t, lastWeek.Match(sunday, now), now)
	}
	// Before 1970 the day arithmetic must still floor towards the past.
	old := &rec{vals: map[string]any{"CreatedDate": instant("1969-12-28T12:00:00Z")}} // a Sunday
	require.True(t, thisWeek.Match(old, time.Date(1969, 12, 31, 12, 0, 0, 0, time.UTC)))
	require.True(t, bind(t, "SELECT Id FROM Account WHERE CreatedDate = TODAY").Match(old, time.Date(1969, 12, 28, 23, 0, 0, 0, time.UTC)))
}

func TestMatchReadsLooselyTypedNumbers(t *testing.T) {
	t.Parallel()
	q := bind(t, "SELECT Id FROM Account WHERE NumberOfEmployees = 12")
	for _, v := range []any{num("12"), "12", 12, int64(12), 12.0, num("1.2E1"), num("012.000")} {
		require.True(t, q.Match(&rec{vals: map[string]any{"NumberOfEmployees": v}}, testNow), "%T %v", v, v)
	}
	require.False(t, q.Match(&rec{vals: map[string]any{"NumberOfEmployees": "twelve"}}, testNow))
}

func TestMatchAndLessDoNotAllocate(t *testing.T) {
	q := bind(t, "SELECT Id FROM Account WHERE Name LIKE 'a%' AND AnnualRevenue > 100.5 AND CreatedDate = LAST_N_DAYS:30 ORDER BY Owner.Name DESC NULLS LAST, AnnualRevenue")
	rows := accounts()
	allocs := testing.AllocsPerRun(200, func() {
		for _, r := range rows {
			q.Match(r, testNow)
		}
		q.Less(rows[0], rows[1])
		q.Less(rows[2], rows[3])
	})
	require.Zero(t, allocs)

	in := bind(t, "SELECT Id FROM Account WHERE Name IN ('a','b','c','d','e','f','g','h','acme') OR Tags__c INCLUDES ('Gold;Partner') OR Industry != 'x'")
	allocs = testing.AllocsPerRun(200, func() {
		for _, r := range rows {
			in.Match(r, testNow)
		}
	})
	require.Zero(t, allocs)
}

func BenchmarkMatch(b *testing.B) {
	q := bind(b, "SELECT Id, Name FROM Account WHERE Name LIKE 'Ac%' AND AnnualRevenue > 1000 AND CreatedDate = LAST_N_DAYS:30")
	r := accounts()[0]
	b.ReportAllocs()
	for b.Loop() {
		if !q.Match(r, testNow) {
			b.Fatal("row must match")
		}
	}
}
