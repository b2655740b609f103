package main

import (
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/deskgate/deskgate/gateway/admin"
	"github.com/deskgate/deskgate/gateway/rules"
)

func ticketsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "tickets", Short: "list and show tickets"}
	var status string
	var asJSON bool
	var limit int
	var before uint64
	list := &cobra.Command{
		Use:   "list",
		Short: "tickets, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newAPIClient()
			if err != nil {
				return err
			}
			q := url.Values{}
			if status != "" {
				q.Set("status", status)
			}
			q.Set("limit", strconv.Itoa(limit))
			if before > 0 {
				q.Set("before", strconv.FormatUint(before, 10))
			}
			var rows []admin.TicketSummary
			raw, err := c.get("/api/v1/tickets", q, &rows)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), raw)
			}
			printTicketList(cmd.OutOrStdout(), rows)
			return nil
		},
	}
	list.Flags().StringVar(&status, "status", "", "only tickets in this status (new, open, pending, solved)")
	list.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON")
	list.Flags().IntVar(&limit, "limit", 100, "at most this many tickets (up to 1000)")
	list.Flags().Uint64Var(&before, "before", 0, "only tickets older than this id (the next page: the last id shown)")

	var showJSON bool
	show := &cobra.Command{
		Use:   "show ID",
		Short: "one ticket: participants and every comment with its audience",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseUint(strings.TrimPrefix(args[0], "#"), 10, 64)
			if err != nil || id == 0 {
				return fmt.Errorf("%q is not a ticket id", args[0])
			}
			c, err := newAPIClient()
			if err != nil {
				return err
			}
			var t admin.TicketView
			raw, err := c.get(fmt.Sprintf("/api/v1/tickets/%d", id), nil, &t)
			if err != nil {
				return err
			}
			if showJSON {
				return printJSON(cmd.OutOrStdout(), raw)
			}
			printTicket(cmd.OutOrStdout(), t)
			return nil
		},
	}
	show.Flags().BoolVar(&showJSON, "json", false, "print the API's JSON")
	cmd.AddCommand(list, show, ticketsDeleteCmd())
	return cmd
}

func printTicketList(w io.Writer, rows []admin.TicketSummary) {
	if len(rows) == 0 {
		fmt.Fprintln(w, "no tickets")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tUPDATED\tREQUESTER\tASSIGNEE\tSUBJECT")
	for _, r := range rows {
		assignee := r.Assignee
		if assignee == "" {
			assignee = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Status, r.UpdatedAt.Local().Format("2006-01-02 15:04"),
			r.Requester.Email, assignee, truncate(r.Subject, 60))
	}
	tw.Flush()
}

func printTicket(w io.Writer, t admin.TicketView) {
	fmt.Fprintf(w, "Ticket #%d  %s\n", t.ID, t.Subject)
	fmt.Fprintf(w, "Status:     %s\n", t.Status)
	fmt.Fprintf(w, "Requester:  %s\n", person(t.Requester.Name, t.Requester.Email))
	assignee := t.Assignee
	if assignee == "" {
		assignee = "-"
	}
	fmt.Fprintf(w, "Assignee:   %s\n", assignee)
	if t.ReplyAddress != "" {
		fmt.Fprintf(w, "Reply to:   %s\n", t.ReplyAddress)
	}
	fmt.Fprintf(w, "CCs:        %s\n", people(t.CCs))
	fmt.Fprintf(w, "Followers:  %s\n", people(t.Followers))
	fmt.Fprintf(w, "Created:    %s   Updated: %s\n", t.CreatedAt.Local().Format(time.DateTime), t.UpdatedAt.Local().Format(time.DateTime))
	for _, f := range t.DeliveryFailures {
		fmt.Fprintf(w, "DELIVERY FAILED: %s (%s) did not get delivery %d, about comment or event %d: %s\n", f.Email, f.As, f.Delivery, f.SourceID, f.Reply)
	}
	for _, e := range t.Events {
		fmt.Fprintf(w, "Event %d:  %s  %s %s by %s, told %d\n", e.ID, e.CreatedAt.Local().Format(time.DateTime), e.Action, e.Detail, rules.ExpertName(e.Actor), len(e.Notified))
	}
	for _, c := range t.Comments {
		kind := "public"
		if !c.Public {
			kind = "internal"
		}
		if c.ThirdParty {
			kind += ", third party"
		}
		fmt.Fprintf(w, "\n--- comment %d  %s  %s via %s (%s)\n", c.ID, c.CreatedAt.Local().Format(time.DateTime), person(c.AuthorName, c.Author), c.Via, kind)
		fmt.Fprintf(w, "    Message-ID: %s\n", c.MessageID)
		if c.Sender != nil {
			fmt.Fprintf(w, "    Sender:     %s: %s\n", c.Sender.Step, c.Sender.Detail)
		}
		for _, p := range c.Problems {
			fmt.Fprintf(w, "    Problem:    %s (the original: deskgate comments raw %d)\n", p, c.ID)
		}
		for _, a := range c.Attachments {
			if a.Problem != "" {
				// A part that did not decode is not a smaller file: say what is wrong.
				fmt.Fprintf(w, "    Attachment: %s (%s, undecodable: %s)\n", a.Name, a.ContentType, a.Problem)
			} else {
				fmt.Fprintf(w, "    Attachment: %s (%s, %d bytes)\n", a.Name, a.ContentType, a.Size)
			}
		}
		if len(c.Notified) == 0 {
			fmt.Fprintln(w, "    Notified:   nobody")
		}
		for _, n := range c.Notified {
			vis := "visible"
			if !n.Visible {
				vis = "hidden"
			}
			status := ""
			if n.Status != "" {
				status = ", " + n.Status
				if n.Reply != "" && n.Status != "sent" {
					status += ": " + n.Reply
				}
			}
			fmt.Fprintf(w, "    Notified:   %s as %s (%s%s)\n", n.Email, n.As, vis, status)
		}
		body := strings.TrimRight(c.Body, "\n")
		for _, line := range strings.Split(body, "\n") {
			fmt.Fprintf(w, "    | %s\n", line)
		}
	}
}

func person(name, email string) string {
	// A display name that looks like an address is how a forged From passes for
	// somebody else: show the address alone.
	if name == "" || strings.ContainsAny(name, "@<>") {
		return email
	}
	// In a list of people a comma in a name ("Ünal, Zoë") would read as two of them.
	if strings.ContainsAny(name, ",;\"") {
		name = `"` + strings.ReplaceAll(name, `"`, `\"`) + `"`
	}
	return fmt.Sprintf("%s <%s>", name, email)
}

func people(ps []admin.Person) string {
	if len(ps) == 0 {
		return "-"
	}
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = person(p.Name, p.Email)
	}
	return strings.Join(parts, ", ")
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
